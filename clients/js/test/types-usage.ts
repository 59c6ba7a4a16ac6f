// Compiled by types.test.mjs with `tsc --noEmit --strict`, never run: the package's API as a
// TypeScript user writes it, through the package's own name (so package.json's exports/types
// are what resolve it). Each @ts-expect-error line must be an error, or tsc fails.
import {
  createSSEParser, readEvents, decodeChunk, streamChat, collectChat, useAIStream, createUseAIStream,
  SluiceError,
} from 'sluice-client';
import type {
  ChatEvent, ChatResult, SSEEvent, SSEFeed, StreamChatOptions, UseAIStreamResult, ReactHooks, Usage, ToolCall,
  DecodedChunk,
} from 'sluice-client';

const feed: SSEFeed = createSSEParser((ev: SSEEvent) => {
  const d: string = ev.data;
  const r: number | null = ev.retry;
  void d; void r;
});
feed('data: x\n\n');
feed.end();

export async function openai(signal: AbortSignal): Promise<string> {
  let text = '';
  for await (const ev of streamChat({ dialect: 'openai', baseUrl: 'http://127.0.0.1:8080', body: { model: 'any', messages: [{ role: 'user', content: 'hi' }] }, apiKey: 'sk-x', signal })) {
    switch (ev.type) {
      case 'text': text += ev.text; break;
      case 'tool_call': { const frag: string = ev.arguments; const id: string | undefined = ev.id; void frag; void id; break; }
      case 'finish': { const why: string = ev.reason; void why; break; }
      case 'usage': { const u: Usage = ev.usage; const n: number = u.completion_tokens; void n; break; }
      default: { const never: never = ev; void never; }
    }
  }
  return text;
}

export async function aichat(): Promise<ChatResult> {
  const r = await collectChat({ dialect: 'aichat', message: 'hi', history: [{ role: 'user', content: 'before' }], sessionId: 's-1', token: 'jwt' },
    (ev: ChatEvent) => { void ev; });
  const calls: ToolCall[] = r.toolCalls;
  const reason: string | null = r.finishReason;
  void calls; void reason;
  return r;
}

export async function errors(): Promise<void> {
  try {
    for await (const ev of streamChat({ message: 'hi', model: 'any' })) void ev;
  } catch (e) {
    if (e instanceof SluiceError) {
      const status: number | null = e.status;
      const type: string | null = e.type;
      const code: string | null = e.code;
      const inStream: boolean = e.inStream;
      const retry: number | null = e.retryAfter;
      const msg: string = e.message;
      void status; void type; void code; void inStream; void retry; void msg;
    }
  }
  const err = new SluiceError('x', { status: 429, retryAfter: 7 });
  void err;
}

export async function sse(res: Response): Promise<void> {
  for await (const ev of readEvents(res)) {
    const c: DecodedChunk = decodeChunk('openai', ev.data);
    void c.done;
  }
}

/* A stand-in with React's hook names; the real module is accepted the same way. */
declare const React: ReactHooks;

export function Component(): string {
  const { text, isStreaming, error, isComplete, startStream, stopStream, reset }: UseAIStreamResult = useAIStream({
    onChunk: (chunk: string) => void chunk,
    onComplete: (fullText: string) => void fullText,
    onError: (message: string) => void message,
  }, React);
  const started: Promise<string | null> = startStream({ message: 'Hello, AI!', history: [], sessionId: 'session-123' });
  void started; void isComplete;
  stopStream();
  reset();
  const useBound = createUseAIStream(React);
  const bound: UseAIStreamResult = useBound({ dialect: 'openai', model: 'any', apiKey: 'sk-x' });
  void bound;
  return isStreaming ? text : (error ?? '');
}

// @ts-expect-error: only the openai and aichat dialects
void streamChat({ dialect: 'monoai' });
// @ts-expect-error: an aichat body needs a message
void collectChat({ dialect: 'aichat', body: { history: [] } });
// @ts-expect-error: error is a string or null, not an Error
export const notAnError: Error | null = ({} as UseAIStreamResult).error;
// @ts-expect-error: text events carry `text`, not `content`
export const content = (ev: ChatEvent) => ev.type === 'text' && ev.content;
export const opts: StreamChatOptions = { dialect: 'aichat', body: { message: 'x', workspaceId: 'w' } };
