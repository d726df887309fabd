/** Runs `send(i)` for i < count with at most `window` calls unsettled; rejects on the first failure. */
export function windowed(
  count: number,
  window: number,
  send: (i: number) => Promise<unknown>,
): Promise<void> {
  if (count === 0) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    let next = 0;
    let inFlight = 0;
    let settled = 0;
    let failed = false;
    const onDone = () => {
      inFlight--;
      settled++;
      if (settled === count) resolve();
      else pump();
    };
    const onError = (err: unknown) => {
      if (failed) return;
      failed = true;
      reject(err);
    };
    const pump = () => {
      while (!failed && inFlight < window && next < count) {
        inFlight++;
        send(next++).then(onDone, onError);
      }
    };
    pump();
  });
}
