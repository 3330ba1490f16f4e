import { conformance } from "./conformance.ts";
import { MemoryStore } from "./memory.ts";

conformance("MemoryStore", { open: () => Promise.resolve(new MemoryStore()) });
