import { describe, expect, it } from 'vitest';
import { type TopicRecords, unanswered } from './driver.js';

const rec = (n: number) => ({ body: new Uint8Array([n]), headers: {} });
const ok = (topicName: string, partition: number) => ({ topicName, partition, errorCode: 0 });

describe('unanswered: records kafkajs resolved without sending', () => {
  const batches: TopicRecords[] = [
    { topic: 'a', records: [rec(0), rec(1), rec(2)] },
    { topic: 'b', records: [rec(3)] },
  ];

  it('none when every partition the last attempt chose was answered', () => {
    const choices = [
      { topic: 'a', partition: 0 },
      { topic: 'a', partition: 1 },
      { topic: 'a', partition: 2 },
      { topic: 'b', partition: 0 },
    ];
    expect(unanswered(batches, choices, [ok('a', 0), ok('a', 1), ok('a', 2), ok('b', 0)])).toEqual([]);
  });

  it('the records of a partition with no answer, pinned to it, judged by the last attempt only', () => {
    const choices = [
      // a first attempt that failed (the leader died), then the retry's choices
      { topic: 'a', partition: 2 },
      { topic: 'a', partition: 2 },
      { topic: 'a', partition: 2 },
      { topic: 'b', partition: 2 },
      { topic: 'a', partition: 0 },
      { topic: 'a', partition: 1 },
      { topic: 'a', partition: 0 },
      { topic: 'b', partition: 1 },
    ];
    expect(unanswered(batches, choices, [ok('a', 1), ok('b', 1)])).toEqual([
      {
        topic: 'a',
        records: [
          { ...rec(0), partition: 0 },
          { ...rec(2), partition: 0 },
        ],
      },
    ]);
  });

  it('an answer with an error code does not count as written', () => {
    const choices = [
      { topic: 'a', partition: 0 },
      { topic: 'a', partition: 0 },
      { topic: 'a', partition: 0 },
      { topic: 'b', partition: 0 },
    ];
    const answered = [ok('a', 0), { topicName: 'b', partition: 0, errorCode: 6 }];
    expect(unanswered(batches, choices, answered)).toEqual([
      { topic: 'b', records: [{ ...rec(3), partition: 0 }] },
    ]);
  });
});
