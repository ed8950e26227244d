/** A deterministic PRNG (xorshift32) in [0, 1), so that a failing fuzz case can be replayed from its seed. */
export function xorshift (seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => {
    x ^= x << 13; x >>>= 0
    x ^= x >>> 17
    x ^= x << 5; x >>>= 0
    return x / 0x100000000
  }
}
