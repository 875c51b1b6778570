/// <reference types="vitest/config" />
import { defineConfig } from 'vite'

// kuma-cp serves the built files under /gui/ (see src/api/gui.rs), so every
// URL in the page is relative to that. JSX is Preact's.
export default defineConfig({
  base: '/gui/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 400 },
  test: {
    environment: 'happy-dom',
    include: ['test/**/*.test.{ts,tsx}'],
  },
})
