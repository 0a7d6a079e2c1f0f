import { crypto, randomHex } from "../builtin.js";
import { hostname } from "node:os";

/**
 * Default lease name and identity.
 *
 * The lease name must be the same for the same command on every host (that is what makes the
 * replicas compete for one lease) and valid for every backend: a Kubernetes object name (DNS-1123
 * subdomain), kept to 63 characters so it is also a valid label value, a safe file name and Redis key.
 *
 * Rule (stable: changing it would split running fleets onto two leases during an upgrade):
 * 1. join the arguments with single spaces (so `--shell "node cron.js"` and `node cron.js` agree);
 * 2. lowercase it, turn every run of characters other than `a-z0-9` into one `-`, trim `-` at both ends;
 * 3. add `-<first 8 hex of sha256(joined command)>` when the readable part alone could make two
 *    really different commands collide: the command had upper-case letters (file names are case
 *    sensitive) or characters other than letters, digits, whitespace and the common separators
 *    `. / _ - = : , @ +`, or the slug had to be cut to fit 63 characters (cut at 54, then the hash),
 *    or nothing readable was left (`cmd-<hash>`).
 * So `node cron.js` is exactly `node-cron-js`. Commands differing only in separators
 * (`node cron.js` / `node cron-js`) share a lease; that errs on the safe side (they exclude each
 * other) and `--name` separates them.
 */

export const MAX_NAME_LENGTH = 63;
const HASH_LENGTH = 8;
/** Separators that carry no meaning of their own in a command line; anything else forces the hash. */
const PLAIN = /^[a-z0-9\s./_\-=:,@+]*$/;

/** Steps 1-2 only: lowercase, runs of other characters to `-`, cut to 63 (may be empty). */
export function readableSlug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, MAX_NAME_LENGTH)
    .replace(/-+$/, "");
}

export function commandSlug(command: readonly string[]): string {
  const joined = command.join(" ");
  const readable = joined
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  if (readable !== "" && readable.length <= MAX_NAME_LENGTH && PLAIN.test(joined)) return readable;
  const hash = crypto().createHash("sha256").update(joined, "utf8").digest("hex").slice(0, HASH_LENGTH);
  if (readable === "") return `cmd-${hash}`;
  const cut = readable.slice(0, MAX_NAME_LENGTH - HASH_LENGTH - 1).replace(/-+$/, "");
  return `${cut}-${hash}`;
}

const DNS1123_SUBDOMAIN = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*$/;

/** `undefined` if `name` is a valid lease name (a Kubernetes object name), else why not. */
export function leaseNameProblem(name: string): string | undefined {
  if (name === "") return "is empty";
  if (name.length > 253) return `is ${name.length} characters long; the limit is 253`;
  if (!DNS1123_SUBDOMAIN.test(name)) {
    return "must be a valid Kubernetes object name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit";
  }
  return undefined;
}

/**
 * `<POD_NAME or hostname>_<8 random hex>`: readable in `status` output, and unique per process so two
 * processes on one host (or two containers with the same hostname) never share an identity.
 */
export function defaultIdentity(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.POD_NAME?.trim() || safeHostname();
  return `${base}_${randomHex(4)}`;
}

function safeHostname(): string {
  try {
    return hostname() || "localhost";
  } catch {
    return "localhost";
  }
}
