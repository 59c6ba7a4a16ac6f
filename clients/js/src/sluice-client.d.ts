// Types for sluice-client.js (the sluice-client npm package; also served by sluice at
// /sluice-client.js). Every export of the module is declared here.

/* ---------------- SSE ---------------- */

/** One dispatched Server-Sent Event. */
export interface SSEEvent {
  /** The `event:` field, or "message" when the event had none. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The last `id:` seen so far in the stream ("" before any); persists across events. */
  id: string;
  /** The last valid `retry:` (milliseconds) seen so far, or null. */
  retry: number | null;
}

/** Feeds decoded text to the parser, in order; `end()` once the stream is over. */
export interface SSEFeed {
  (text: string): void;
  /** Handles a final lone "\r" as a line end, then drops an unterminated last event. */
  end(): void;
}

/**
 * An incremental SSE parser (WHATWG EventSource rules): "\n", "\r\n" and "\r" line ends (also
 * "\r\n" split between two pieces), comments, multi-line data, id/event/retry fields, a leading
 * BOM. Events are dispatched on their blank line.
 */
export function createSSEParser(onEvent: (event: SSEEvent) => void): SSEFeed;

/**
 * The SSE events of a fetch Response's body, its bytes decoded as UTF-8 across reads. Leaving
 * the loop early cancels the body.
 */
export function readEvents(response: Response): AsyncGenerator<SSEEvent, void, undefined>;

/* ---------------- events ---------------- */

/** The dialect spoken: sluice's OpenAI API, or seed 003's aichat (POST /api/ai-chat/stream). */
export type Dialect = 'openai' | 'aichat';

/** A piece of the answer's text. */
export interface TextEvent {
  type: 'text';
  text: string;
  /** The choice it belongs to (OpenAI `n`); always 0 for aichat. */
  choice: number;
}

/**
 * A fragment of a tool call (OpenAI dialect). The first fragment of a call carries `id` and
 * `name`; the following ones add to `arguments` (JSON text, complete only once all arrived).
 */
export interface ToolCallEvent {
  type: 'tool_call';
  choice: number;
  /** Which tool call of the choice (OpenAI's tool_calls[].index). */
  index: number;
  id?: string;
  name?: string;
  arguments: string;
}

/** A choice finished: "stop", "length", "tool_calls", "content_filter", ... (OpenAI dialect). */
export interface FinishEvent {
  type: 'finish';
  choice: number;
  reason: string;
}

/** Token counts (OpenAI dialect): streamChat asks for them with stream_options.include_usage. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  [field: string]: unknown;
}

export interface UsageEvent {
  type: 'usage';
  usage: Usage;
}

/** What streamChat yields; narrow on `type`. */
export type ChatEvent = TextEvent | ToolCallEvent | FinishEvent | UsageEvent;

/** An error inside a stream, as the dialect sent it. */
export interface StreamErrorInfo {
  message: string;
  type: string | null;
  code: string | null;
}

/** One SSE event's data, decoded. */
export interface DecodedChunk {
  events: ChatEvent[];
  /** The dialect's end marker ([DONE], {"done":true}). */
  done: boolean;
  error: StreamErrorInfo | null;
}

/** Decodes one SSE event's data for the dialect. Throws a TypeError for an unknown dialect. */
export function decodeChunk(dialect: Dialect, data: string): DecodedChunk;

/* ---------------- errors ---------------- */

export interface SluiceErrorInit {
  status?: number | null;
  type?: string | null;
  code?: string | null;
  inStream?: boolean;
  retryAfter?: number | null;
}

/** An error answer: an HTTP error status, or an error event inside the stream. */
export class SluiceError extends Error {
  constructor(message: string, init?: SluiceErrorInit);
  name: 'SluiceError';
  /** The HTTP status of an error answer; null when the error came inside a 200 stream. */
  status: number | null;
  /** OpenAI's error.type ("invalid_request_error", "server_error", ...); for aichat's NestJS errors, their "error" ("Unauthorized", "Bad Request"). */
  type: string | null;
  /** OpenAI's error.code ("upstream_disconnected", ...), "stream_incomplete" when the stream stopped before its end marker, "not_event_stream" for a 2xx that is not SSE. */
  code: string | null;
  /** True when the error arrived inside the stream (after some events, maybe). */
  inStream: boolean;
  /** Seconds from a Retry-After header (429, 503), else null. */
  retryAfter: number | null;
}

/* ---------------- streamChat ---------------- */

/** A previous turn of the conversation. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | (string & {});
  content: string | null;
  [field: string]: unknown;
}

/** An OpenAI chat.completions request body; `stream` is forced to true. */
export interface OpenAIChatBody {
  model?: string;
  messages: ChatMessage[];
  stream_options?: { include_usage?: boolean } | null;
  [field: string]: unknown;
}

/** Seed 003's ChatRequestDto: the body of POST /api/ai-chat/stream. */
export interface AIChatBody {
  message: string;
  history?: ChatMessage[];
  sessionId?: string;
  workspaceId?: string;
  projectId?: string;
  currentOrganizationId?: string;
  [field: string]: unknown;
}

export interface StreamChatCommon {
  /** Where sluice is: "https://gw.example" ("" or absent: this page's origin). */
  baseUrl?: string;
  /** The whole endpoint URL, instead of baseUrl + the dialect's path. */
  url?: string;
  /** Sent as `Authorization: Bearer …` (an API key for openai, a JWT for aichat). */
  apiKey?: string;
  /** The same as apiKey (seed 003 calls its JWT a token). */
  token?: string;
  /** Extra request headers (e.g. X-Request-Id). */
  headers?: Record<string, string>;
  /** Aborting it aborts the request; the loop then throws signal.reason. */
  signal?: AbortSignal;
  /** A fetch to use instead of globalThis.fetch. */
  fetch?: typeof fetch;
}

/**
 * OpenAI dialect (POST {baseUrl}/v1/chat/completions): either a whole `body`, or `message`
 * (+ `history`, `model`) from which one is made. stream_options.include_usage defaults to true.
 */
export interface OpenAIStreamOptions extends StreamChatCommon {
  dialect?: 'openai';
  body?: OpenAIChatBody;
  model?: string;
  message?: string;
  history?: ChatMessage[];
}

/**
 * aichat dialect (POST {baseUrl}/api/ai-chat/stream): either a whole `body`, or `message`
 * (+ `history`, `sessionId`).
 */
export interface AIChatStreamOptions extends StreamChatCommon {
  dialect: 'aichat';
  body?: AIChatBody;
  message?: string;
  history?: ChatMessage[];
  sessionId?: string;
}

export type StreamChatOptions = OpenAIStreamOptions | AIChatStreamOptions;

/**
 * Streams one answer: `for await (const ev of streamChat(options))`. Nothing is sent until the
 * first event is asked for. Ends after the dialect's end marker; throws a SluiceError on an
 * HTTP error status, on an in-stream error event (after yielding the events before it) and on
 * a stream that stops before its end marker. Leaving the loop early (break, return, throw) or
 * aborting `signal` aborts the request, and sluice cancels the upstream call.
 */
export function streamChat(options?: StreamChatOptions): AsyncGenerator<ChatEvent, void, undefined>;

/** A tool call assembled from its fragments, in OpenAI's assistant-message shape. */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** The whole answer (choice 0). */
export interface ChatResult {
  text: string;
  toolCalls: ToolCall[];
  /** null when the dialect sends none (aichat). */
  finishReason: string | null;
  /** null when the dialect sends none (aichat). */
  usage: Usage | null;
}

/** Runs streamChat to its end; onEvent sees each event on the way. Rejects as streamChat throws. */
export function collectChat(options?: StreamChatOptions, onEvent?: (event: ChatEvent) => void): Promise<ChatResult>;

/* ---------------- React ---------------- */

/**
 * What useAIStream needs of React: pass the `react` module itself (React >= 16.8). Typed
 * loosely so that any React's own types are accepted.
 */
export interface ReactHooks {
  useState: (...args: any[]) => any;
  useRef: (...args: any[]) => any;
  useCallback: (...args: any[]) => any;
  useEffect: (...args: any[]) => any;
}

/** What startStream takes: seed 003's request, or (dialect 'openai') an OpenAI body. */
export type AIStreamRequest = AIChatBody | OpenAIChatBody;

export interface UseAIStreamOptions {
  /** Each text delta as it arrives. */
  onChunk?: (chunk: string) => void;
  /** The whole text, once the stream ended properly. */
  onComplete?: (fullText: string) => void;
  /** The error message (the same string as `error`), and the error itself. */
  onError?: (error: string, cause: unknown) => void;
  /** 'aichat' (default, seed 003's endpoint) or 'openai'. */
  dialect?: Dialect;
  baseUrl?: string;
  url?: string;
  /** For dialect 'openai': the model when the request names none. */
  model?: string;
  apiKey?: string;
  token?: string;
  headers?: Record<string, string>;
  fetch?: typeof fetch;
}

/** Exactly seed 003's return value. */
export interface UseAIStreamResult {
  /** The text so far (kept after stopStream). */
  text: string;
  isStreaming: boolean;
  /** The error message, or null. */
  error: string | null;
  /** True once the stream ended properly. */
  isComplete: boolean;
  /** Starts a stream (stopping one in flight); resolves with the whole text, or null if stopped or failed. */
  startStream: (request: AIStreamRequest) => Promise<string | null>;
  /** Aborts the stream in flight (sluice cancels the upstream); no-op when idle. */
  stopStream: () => void;
  /** Stops, and clears text, error and isComplete. */
  reset: () => void;
}

/**
 * Seed 003's hook. React is the second argument (default: globalThis.React), since this module
 * imports nothing; throws a TypeError when neither is there.
 */
export function useAIStream(options?: UseAIStreamOptions, React?: ReactHooks): UseAIStreamResult;

/** Binds React once: `const useAIStream = createUseAIStream(React)`, then useAIStream(options). */
export function createUseAIStream(React: ReactHooks): (options?: UseAIStreamOptions) => UseAIStreamResult;
