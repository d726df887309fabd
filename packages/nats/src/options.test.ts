import { ConfigError } from '@omnibus/core';
import { describe, expect, it } from 'vitest';
import { nats, transportFromUrl } from './index.js';

describe('nats options', () => {
  it('reads the URL: servers, credentials, numbers and booleans', () => {
    const t = transportFromUrl(
      'nats://u:p%40ss@h1:4222,h2:4223?ackWaitMs=5000&autoCreateStreams=false',
    ) as ReturnType<typeof nats>;
    expect(t.options.servers).toEqual(['h1:4222', 'h2:4223']);
    expect(t.options.user).toBe('u');
    expect(t.options.pass).toBe('p@ss');
    expect(t.options.ackWaitMs).toBe(5000);
    expect(t.options.autoCreateStreams).toBe(false);
  });

  it('rejects unknown options and URL parameters, naming them', () => {
    expect(() => nats({ ackWait: 1 } as never)).toThrow(ConfigError);
    expect(() => transportFromUrl('nats://h:4222?ackwait=1')).toThrow(/ackwait/);
    expect(() => nats({ fetchExpiresMs: 10 })).toThrow(/fetchExpiresMs/);
  });

  it("refuses onNoSubscribers 'reject' and says why", () => {
    expect(() => nats({ onNoSubscribers: 'reject' })).toThrow(/consumers created later/);
  });

  it('refuses a topic name NATS cannot use as a stream', async () => {
    const t = nats();
    await expect(t.provision('a.b', [])).rejects.toThrow(/topic/);
  });
});
