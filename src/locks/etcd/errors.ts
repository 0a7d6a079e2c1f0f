import {
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  EtcdRoleNotGrantedError,
  EtcdUserNotFoundError,
  GRPCUnauthenticatedError,
} from "etcd3";
import { LockError, PermanentLockError } from "../../election/lock.js";
import { ETCD_PASSWORD_ENV } from "./config.js";

/** etcd did not answer in time, is unreachable, or has no quorum: a failed attempt, retried by the elector. */
export class EtcdUnavailableError extends LockError {}

/** What a failed call was doing, for the message a user sees. */
export interface CallContext {
  /** `read` or `write`. */
  verb: "read" | "write";
  key: string;
  /** `etcd://h1:2379,h2:2379` (no secrets). */
  where: string;
  username: string | undefined;
}

/**
 * Bad credentials and missing permissions are permanent (the CLI exits 69 naming key and verb);
 * anything else — refused connections, deadlines, lost quorum ("etcdserver: request timed out"),
 * leader changes — is a transient failure the elector retries until its renew deadline.
 */
export function classifyEtcdError(error: unknown, ctx: CallContext): LockError {
  if (error instanceof LockError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const user = ctx.username === undefined ? "anonymous" : `"${ctx.username}"`;
  if (error instanceof EtcdPermissionDeniedError || error instanceof EtcdRoleNotGrantedError) {
    return new PermanentLockError(
      `etcd at ${ctx.where} denied ${ctx.verb} on key ${ctx.key} to user ${user} (permission denied); grant it readwrite on the key prefix (etcdctl role grant-permission ROLE --prefix=true readwrite PREFIX)`,
      { cause: error },
    );
  }
  if (error instanceof EtcdAuthenticationFailedError || error instanceof EtcdUserNotFoundError) {
    return new PermanentLockError(
      `etcd at ${ctx.where} rejected user ${user} (wrong user name or password) when trying to ${ctx.verb} key ${ctx.key}`,
      { cause: error },
    );
  }
  if (/user name is empty/.test(message) || error instanceof GRPCUnauthenticatedError) {
    return new PermanentLockError(
      `etcd at ${ctx.where} requires authentication to ${ctx.verb} key ${ctx.key}: put the user in the URL (etcd://USER@host:2379) and the password in ${ETCD_PASSWORD_ENV} or --etcd-password-file`,
      { cause: error },
    );
  }
  if (/authentication is not enabled/.test(message)) {
    return new PermanentLockError(
      `etcd at ${ctx.where} has authentication disabled but user ${user} was given; remove the user from the URL`,
      { cause: error },
    );
  }
  return new EtcdUnavailableError(`etcd at ${ctx.where}: ${ctx.verb} of key ${ctx.key} failed: ${firstLine(message)}`, { cause: error });
}

function firstLine(text: string): string {
  const line = text.split("\n")[0] ?? text;
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}
