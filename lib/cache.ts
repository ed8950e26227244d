// Bounded least-recently-used map. Map keeps insertion order, so the first key is the oldest.

export class LruCache<K, V> {
  private readonly map = new Map<K, V>()
  constructor (readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError('LruCache max must be a positive integer')
  }

  get size (): number {
    return this.map.size
  }

  get (key: K): V | undefined {
    const v = this.map.get(key)
    if (v !== undefined) {
      this.map.delete(key)
      this.map.set(key, v)
    }
    return v
  }

  set (key: K, value: V): void {
    this.map.delete(key)
    this.map.set(key, value)
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K)
  }

  delete (key: K): boolean {
    return this.map.delete(key)
  }

  clear (): void {
    this.map.clear()
  }

  /** Values from least to most recently used, without touching their order. */
  values (): IterableIterator<V> {
    return this.map.values()
  }
}
