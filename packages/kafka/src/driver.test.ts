import { describe, expect, it } from 'vitest';
import { FetchedRecord, type TopicRecords, unanswered } from './driver.js';

const rec = (n: number) => ({ body: new Uint8Array([n]), headers: {} });
const ok = (topicName: string, partition: number) => ({ topicName, partition, errorCode: 0 });

describe('unanswered: records kafkajs resolved without sending', () => {
  const batches: TopicRecords[] = [
    { topic: 'a', records: [rec(0), rec(1), rec(2)] },
    { topic: 'b', records: [rec(3)] },
  ];

  it('none when every partition a record went to was answered', () => {
    expect(unanswered(batches, [[0, 1, 2], [0]], [ok('a', 0), ok('a', 1), ok('a', 2), ok('b', 0)])).toEqual(
      [],
    );
  });

  it('the records of a partition with no answer, pinned to it (the same partition of another topic does not count)', () => {
    expect(unanswered(batches, [[0, 1, 0], [1]], [ok('a', 1), ok('b', 0), ok('b', 1)])).toEqual([
      {
        topic: 'a',
        records: [
          { ...rec(0), partition: 0 },
          { ...rec(2), partition: 0 },
        ],
      },
    ]);
  });

  it('an answer with an error code does not count as written; a record never partitioned is resent unpinned', () => {
    const answered = [ok('a', 0), { topicName: 'b', partition: 0, errorCode: 6 }];
    expect(unanswered(batches, [[0, undefined, 0], [0]], answered)).toEqual([
      { topic: 'a', records: [rec(1)] },
      { topic: 'b', records: [{ ...rec(3), partition: 0 }] },
    ]);
  });
});

describe('FetchedRecord and hostile header names', () => {
  it('keeps a __proto__ header as an own header, in the strings and in the raw copy a retry is written from', () => {
    // kafkajs builds header objects with computed keys, so `__proto__` arrives as an own property.
    const headers = { ...{ ['__proto__']: Buffer.from('p') }, constructor: Buffer.from('c') };
    const r = new FetchedRecord({ offset: '0', timestamp: '1', key: null, value: null, headers } as never);
    expect(Object.getOwnPropertyDescriptor(r.headers, '__proto__')?.value).toBe('p');
    expect(r.headers.constructor).toBe('c');
    const raw = r.rawHeaders;
    // Assigned plainly, the Buffer became the prototype and its byte indices looked like headers.
    expect(Object.getPrototypeOf(raw)).toBe(Object.prototype);
    const names: string[] = [];
    for (const name in raw) names.push(name);
    expect(names.sort()).toEqual(['__proto__', 'constructor']);
  });
});
