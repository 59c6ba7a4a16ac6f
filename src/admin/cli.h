/* `sluice keys create|list|revoke`: API-key administration from the command line, against the
 * store the config names (SQLite file or PostgreSQL). */
#ifndef SL_ADMIN_CLI_H
#define SL_ADMIN_CLI_H

/* argv[0] is "keys". Returns the process exit code. */
int sl_cli_keys(int argc, char **argv);

#endif
