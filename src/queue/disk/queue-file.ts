import { open, type FileHandle } from 'node:fs/promises';

/**
 * The file operations the ring needs, so that tests can put a simulated disk (one that forgets
 * unsynced writes and tears the last one) under the same code.
 */
export interface QueueFile {
  read(buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  write(buf: Buffer, offset: number, length: number, position: number): Promise<void>;
  /** Makes every completed write durable (fdatasync). */
  sync(): Promise<void>;
  size(): Promise<number>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

class FsQueueFile implements QueueFile {
  constructor(private readonly handle: FileHandle) {}

  async read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(buf, offset + done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }

  async write(buf: Buffer, offset: number, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const { bytesWritten } = await this.handle.write(buf, offset + done, length - done, position + done);
      done += bytesWritten;
    }
  }

  sync(): Promise<void> {
    return this.handle.datasync();
  }

  async size(): Promise<number> {
    return (await this.handle.stat()).size;
  }

  truncate(length: number): Promise<void> {
    return this.handle.truncate(length);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** Opens (or creates) a queue file on the real file system. */
export async function openFsQueueFile(path: string, create: boolean): Promise<QueueFile> {
  const handle = await open(path, create ? 'a+' : 'r+', 0o640).then(async (h) => {
    if (!create) return h;
    // 'a+' creates without truncating; reopen read-write without O_APPEND so positional writes land where asked.
    await h.close();
    return open(path, 'r+');
  });
  return new FsQueueFile(handle);
}
