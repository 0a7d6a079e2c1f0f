import { memoryCapabilities, MemoryLock, MemoryStore } from "../../src/locks/memory/index.js";
import { conformance } from "./conformance.js";

const stores = new Map<string, MemoryStore>();
const locks: MemoryLock[] = [];
const store = (name: string): MemoryStore => {
  let s = stores.get(name);
  if (s === undefined) stores.set(name, (s = new MemoryStore(name)));
  return s;
};

conformance({
  title: "memory",
  capabilities: memoryCapabilities,
  start: async () => undefined,
  stop: async () => undefined,
  async open(name, identity) {
    const lock = new MemoryLock(store(name), identity, { watch: true });
    locks.push(lock);
    return { lock };
  },
  // The in-process "server" hangs every call of every lock until thawed.
  async freeze() {
    for (const lock of locks) lock.fail("all", "hang");
  },
  async thaw() {
    for (const lock of locks) lock.clearFailures();
  },
  async deleteRecord(name) {
    store(name).delete();
  },
});
