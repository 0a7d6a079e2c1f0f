import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CorruptRecordError } from "../../src/election/lock.js";
import type { LeaderElectionRecord } from "../../src/election/record.js";
import {
  formatMicroTime,
  leaseRaw,
  leaseSpecToRecord,
  recordToLeaseSpec,
  type LeaseSpecJSON,
} from "../../src/locks/kubernetes/mapping.js";
import { loadFixture } from "../support/k8s/fixtures.js";
import { formatMicroTime as serverFormat, parseGoTime, RFC3339_MICRO } from "../support/k8s/go-time.js";

const MICRO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

const t = (iso: string): Date => new Date(iso);

function record(over: Partial<LeaderElectionRecord> = {}): LeaderElectionRecord {
  return {
    holderIdentity: "foo",
    leaseDurationSeconds: 10,
    acquireTime: t("2024-05-01T12:00:00.123Z"),
    renewTime: t("2024-05-01T12:00:05.456Z"),
    leaderTransitions: 1,
    ...over,
  };
}

describe("record ↔ Lease spec mapping (client-go LeaseLock)", () => {
  test("every record field lands in its client-go Lease field, times as MicroTime", () => {
    const spec = recordToLeaseSpec(record());
    assert.deepEqual(spec, {
      holderIdentity: "foo",
      leaseDurationSeconds: 10,
      acquireTime: "2024-05-01T12:00:00.123000Z",
      renewTime: "2024-05-01T12:00:05.456000Z",
      leaseTransitions: 1,
    });
    assert.match(spec.acquireTime ?? "", MICRO);
    assert.match(spec.renewTime ?? "", MICRO);
  });

  test("field order is client-go's and empty strategy / preferredHolder are omitted", () => {
    assert.deepEqual(Object.keys(recordToLeaseSpec(record())), [
      "holderIdentity",
      "leaseDurationSeconds",
      "acquireTime",
      "renewTime",
      "leaseTransitions",
    ]);
    const coordinated = recordToLeaseSpec(record({ strategy: "OldestEmulationVersion", preferredHolder: "bar" }));
    assert.equal(coordinated.strategy, "OldestEmulationVersion");
    assert.equal(coordinated.preferredHolder, "bar");
  });

  test("a released record is written with holderIdentity present and empty", () => {
    const now = t("2024-05-01T12:05:00Z");
    const spec = recordToLeaseSpec({ holderIdentity: "", leaseDurationSeconds: 1, acquireTime: now, renewTime: now, leaderTransitions: 4 });
    assert.ok(Object.hasOwn(spec, "holderIdentity"));
    assert.equal(spec.holderIdentity, "");
    assert.equal(spec.leaseDurationSeconds, 1);
    assert.equal(JSON.parse(JSON.stringify(spec)).holderIdentity, "");
  });

  test("a zero time is written as null, as Go marshals a pointer to a zero MicroTime", () => {
    const spec = recordToLeaseSpec(record({ acquireTime: null, renewTime: null }));
    assert.equal(spec.acquireTime, null);
    assert.equal(spec.renewTime, null);
  });

  test("spec → record → spec round-trips (test case 37)", () => {
    const spec: LeaseSpecJSON = {
      holderIdentity: "foo",
      leaseDurationSeconds: 10,
      acquireTime: "2024-05-01T12:00:00.123000Z",
      renewTime: "2024-05-01T12:00:01.999000Z",
      leaseTransitions: 1,
    };
    assert.deepEqual(recordToLeaseSpec(leaseSpecToRecord(spec)), spec);
    const r = record();
    assert.deepEqual(leaseSpecToRecord(recordToLeaseSpec(r)), r);
  });

  test("absent spec fields read as zero values, as client-go's LeaseSpecToLeaderElectionRecord", () => {
    assert.deepEqual(leaseSpecToRecord({}), {
      holderIdentity: "",
      leaseDurationSeconds: 0,
      acquireTime: null,
      renewTime: null,
      leaderTransitions: 0,
    });
    assert.deepEqual(leaseSpecToRecord(undefined), leaseSpecToRecord({}));
    assert.deepEqual(leaseSpecToRecord({ holderIdentity: null, acquireTime: null }), leaseSpecToRecord({}));
  });

  test("Dates handed over by the client library are accepted as well as strings", () => {
    const r = leaseSpecToRecord({ acquireTime: "2024-05-01T12:00:00.000000Z", renewTime: new Date("2024-05-01T12:00:01Z") as unknown as string });
    assert.equal(r.renewTime?.toISOString(), "2024-05-01T12:00:01.000Z");
  });

  test("a spec no API server would store is a CorruptRecordError, not a crash", () => {
    assert.throws(() => leaseSpecToRecord({ holderIdentity: 5 as unknown as string }), CorruptRecordError);
    assert.throws(() => leaseSpecToRecord({ leaseDurationSeconds: -1 }), CorruptRecordError);
    assert.throws(() => leaseSpecToRecord({ renewTime: "yesterday" }), CorruptRecordError);
  });
});

describe("MicroTime wire format", () => {
  test("what leader-run writes is what the API server's Go parser accepts, and prints back unchanged", () => {
    for (const iso of ["2024-05-01T12:00:00.000Z", "1999-12-31T23:59:59.999Z", "2024-02-29T00:00:00.001Z"]) {
      const wire = formatMicroTime(new Date(iso)) ?? "";
      assert.match(wire, MICRO);
      assert.equal(serverFormat(parseGoTime(wire, RFC3339_MICRO)), wire);
    }
  });

  test("a plain Date#toISOString (three digits) is not a MicroTime the server accepts", () => {
    assert.throws(() => parseGoTime(new Date().toISOString(), RFC3339_MICRO), /cannot parse/);
  });
});

describe("raw: what followers compare to notice a renewal", () => {
  test("two renewals within the same second are different raws", () => {
    const a = record({ renewTime: t("2024-05-01T12:00:05.100Z") });
    const b = record({ renewTime: t("2024-05-01T12:00:05.600Z") });
    assert.notEqual(leaseRaw(a, "10"), leaseRaw(b, "11"));
    // Even if a clock step made the timestamps equal, the resourceVersion still differs.
    assert.notEqual(leaseRaw(a, "10"), leaseRaw(a, "11"));
  });

  test("reading the same Lease twice gives the same raw", () => {
    assert.equal(leaseRaw(record(), "10"), leaseRaw(leaseSpecToRecord(recordToLeaseSpec(record())), "10"));
  });
});

describe("Leases written by client-go", () => {
  test("a lease held by a Go program maps to its holder, duration, times and transitions", () => {
    const lease = loadFixture("client-go-held");
    const r = leaseSpecToRecord(lease.spec as LeaseSpecJSON);
    assert.equal(r.holderIdentity, "go-node-1_8f2c6d1e-0b8a-4a52-9d0e-6f1c2b3a4d5e");
    assert.equal(r.leaseDurationSeconds, 15);
    assert.equal(r.leaderTransitions, 3);
    assert.equal(r.acquireTime?.toISOString(), "2024-05-01T12:00:00.123Z");
    assert.equal(r.renewTime?.toISOString(), "2024-05-01T12:00:10.654Z");
  });

  test("a lease released by a Go program reads as held by nobody", () => {
    const r = leaseSpecToRecord(loadFixture("client-go-released").spec as LeaseSpecJSON);
    assert.equal(r.holderIdentity, "");
    assert.equal(r.leaseDurationSeconds, 1);
    assert.equal(r.leaderTransitions, 3);
  });

  test("strategy and preferredHolder of a coordinated lease are read", () => {
    const r = leaseSpecToRecord(loadFixture("client-go-coordinated").spec as LeaseSpecJSON);
    assert.equal(r.strategy, "OldestEmulationVersion");
    assert.equal(r.preferredHolder, "go-node-2");
  });

  test("a cluster's kube-scheduler Lease maps like any other", () => {
    const r = leaseSpecToRecord(loadFixture("kube-scheduler-get").spec as LeaseSpecJSON);
    assert.equal(r.holderIdentity, "control-plane-1_1f4b3c2a-9d8e-4f7a-b6c5-d4e3f2a1b0c9");
    assert.equal(r.leaderTransitions, 0);
  });
});
