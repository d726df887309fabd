/** How the transport reads the client's and the JetStream API's errors. */
import { redactText } from '@omnibus/core';

/** An error's text with credentials masked. */
export function describe(err: unknown): string {
  return redactText(err instanceof Error ? err.message : String(err));
}

/** 404-style answers of the JetStream API (stream, consumer or message not found). */
export function notFound(err: unknown): boolean {
  return /not found/i.test(err instanceof Error ? err.message : String(err));
}

/** The JetStream API's "stream not found" (a consumer request on a missing stream answers this too). */
export function streamNotFound(err: unknown): boolean {
  return /stream not found/i.test(err instanceof Error ? err.message : String(err));
}
