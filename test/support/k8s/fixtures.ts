import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const DIR = join(dirname(fileURLToPath(import.meta.url)), "fixtures");

export type FixtureName = "client-go-held" | "client-go-released" | "client-go-coordinated" | "kube-scheduler-get";

export interface LeaseObject {
  kind?: string;
  apiVersion?: string;
  metadata: Record<string, unknown> & { name: string; namespace?: string };
  spec: Record<string, unknown>;
}

/** A Lease as client-go writes or a cluster serves it (see fixtures/README.md); a fresh copy each call. */
export function loadFixture(name: FixtureName): LeaseObject {
  return JSON.parse(readFileSync(join(DIR, `${name}.json`), "utf8")) as LeaseObject;
}
