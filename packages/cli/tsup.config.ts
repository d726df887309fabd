import { defineConfig } from 'tsup';

// One ESM entry: the `omnibus` command (a bin needs no CommonJS build or type declarations).
export default defineConfig({
  entry: ['src/bin.ts'],
  format: ['esm'],
  dts: false,
  sourcemap: true,
  clean: true,
  target: 'node20',
});
