// @peculiar/x509 v2 resolves its algorithm providers through tsyringe, which
// throws at import time unless a Reflect metadata polyfill is loaded first, and
// no polyfill (reflect-metadata, core-js, @abraham/reflection) is installed.
// tsyringe only needs these three functions; this file installs them when no
// real polyfill is present. Import it before '@peculiar/x509'.
type Target = object
type MetaKey = string | symbol

interface ReflectMetadata {
  defineMetadata?: (key: MetaKey, value: unknown, target: Target, property?: string | symbol) => void
  getOwnMetadata?: (key: MetaKey, target: Target, property?: string | symbol) => unknown
  getMetadata?: (key: MetaKey, target: Target, property?: string | symbol) => unknown
}

const reflect = Reflect as typeof Reflect & ReflectMetadata

if (typeof reflect.getMetadata !== 'function') {
  const store = new WeakMap<Target, Map<string, unknown>>()
  const slot = (key: MetaKey, property?: string | symbol): string =>
    `${property === undefined ? '' : String(property)}\u0000${String(key)}`

  const getOwnMetadata = (key: MetaKey, target: Target, property?: string | symbol): unknown =>
    store.get(target)?.get(slot(key, property))

  reflect.defineMetadata = (key, value, target, property) => {
    let entries = store.get(target)
    if (entries === undefined) {
      entries = new Map()
      store.set(target, entries)
    }
    entries.set(slot(key, property), value)
  }
  reflect.getOwnMetadata = getOwnMetadata
  reflect.getMetadata = (key, target, property) => {
    for (let o: Target | null = target; o !== null; o = Object.getPrototypeOf(o) as Target | null) {
      const value = getOwnMetadata(key, o, property)
      if (value !== undefined) return value
    }
    return undefined
  }
}

export {}
