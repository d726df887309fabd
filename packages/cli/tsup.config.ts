import { cpSync } from 'node:fs';
import { defineConfig } from 'tsup';

// One ESM entry: the `omnibus` command (a bin needs no CommonJS build or type declarations). The console's
// page (HTML, CSS, script) is read at run time, so it is copied beside the bundle.
export default defineConfig({
  entry: ['src/bin.ts'],
  format: ['esm'],
  dts: false,
  sourcemap: true,
  clean: true,
  target: 'node20',
  onSuccess: async () => {
    cpSync('src/console/assets', 'dist/console/assets', { recursive: true });
  },
});
