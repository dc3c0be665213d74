// Defaults the running agent needs, without the schema (so that it need not load zod).

/** `mem_buf_length` as configured, or the default of the queue's mode. */
export function memBufLength(q: { mode: string; mem_buf_length?: number | undefined }): number {
  return q.mem_buf_length ?? (q.mode === 'normal' ? 10_000 : 100_000);
}
