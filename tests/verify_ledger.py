#!/usr/bin/env python3
"""An independent verifier of the aumos-governance ledger, written from
docs/ledger-format.md alone: the Python standard library plus PyNaCl for Ed25519.

    verify_ledger.py vectors docs/ledger-test-vectors.json
    verify_ledger.py export LEDGER.jsonl --public-key KEYFILE [--public-key KEYFILE ...]

Exit status 0 when everything holds (a summary is printed); 1 with
"FAILED: first bad seq N: reason" otherwise.
"""
import base64
import hashlib
import json
import struct
import sys

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

TAG = b"aumos.governance.ledger.entry.v1"
ZERO = bytes(32)


class Bad(Exception):
    def __init__(self, seq, reason):
        super().__init__(f"first bad seq {seq}: {reason}")


def _str(value):
    data = value.encode("utf-8")
    return struct.pack(">I", len(data)) + data


def _opt(value):
    return b"\x00" if value is None else b"\x01" + _str(value)


def canonical(e):
    """Section 1.1: the canonical bytes of an export entry."""
    return b"".join([
        _str(TAG.decode()),
        struct.pack(">Q", e["seq"]),
        _str(e["tenant_id"]),
        _str(e["aggregate_type"]),
        _str(e["aggregate_id"]),
        struct.pack(">Q", e["aggregate_seq"]),
        _str(e["event_type"]),
        _str(e["event_version"]),
        _str(e["payload"]),
        _str(e["actor"]),
        _opt(e["request_id"]),
        _opt(e["trace_id"]),
        _opt(e["causation_id"]),
        _opt(e["correlation_id"]),
        struct.pack(">q", e["recorded_at_micros"]),
        bytes.fromhex(e["prev_hash"]),
    ])


def sha256(data):
    return hashlib.sha256(data).digest()


def leaf(data):
    return sha256(b"\x00" + data)


def node(left, right):
    return sha256(b"\x01" + left + right)


def mth(leaves):
    """Section 1.2: RFC 6962 Merkle tree hash."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


class Roots:
    """Roots of every prefix, computed incrementally (a stack of complete subtrees)."""

    def __init__(self):
        self.leaves = []

    def root(self, size):
        # Split the prefix into complete, power-of-two subtrees from the left, hash each,
        # then fold them from the right: the same value as mth(leaves[:size]).
        stack = []
        start = 0
        remaining = size
        while remaining:
            k = 1 << (remaining.bit_length() - 1)
            stack.append(self._complete(start, k))
            start += k
            remaining -= k
        if not stack:
            return sha256(b"")
        acc = stack.pop()
        while stack:
            acc = node(stack.pop(), acc)
        return acc

    def _complete(self, start, size):
        level = self.leaves[start:start + size]
        while len(level) > 1:
            level = [node(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        return level[0]


def parse_key(text):
    """Section 2: <name>+<key id hex>+<base64(0x01 || key)>."""
    name, key_id, blob = text.strip().split("+", 2)
    raw = base64.b64decode(blob)
    if len(raw) != 33 or raw[0] != 1:
        raise ValueError("not an Ed25519 verifier key")
    expected = sha256(name.encode() + b"\n" + raw)[:4]
    if expected.hex() != key_id.lower():
        raise ValueError("key id does not match")
    return name, expected, VerifyKey(raw[1:])


def verify_note(note, keys):
    """Section 2: returns (origin, tree_size, root) of a checkpoint signed by a trusted key."""
    split = note.index("\n\n")
    body, sigs = note[:split + 1], note[split + 2:]
    trusted = False
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            raise ValueError("malformed signature line")
        name, blob = line[2:].rsplit(" ", 1)
        blob = base64.b64decode(blob)
        for key_name, key_id, key in keys:
            if key_name == name and key_id == blob[:4]:
                try:
                    key.verify(body.encode("utf-8"), blob[4:])
                except BadSignatureError:
                    raise ValueError(f"signature by {name} does not verify")
                trusted = True
    if not trusted:
        raise ValueError("no signature by a trusted key")
    origin, size, root = body.split("\n")[:3]
    return origin, int(size), base64.b64decode(root)


def verify_export(path, keys):
    """Section 4."""
    roots = Roots()
    prev = ZERO
    checkpoints = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            obj = json.loads(line)
            if obj["kind"] == "checkpoint":
                try:
                    checkpoints.append(verify_note(obj["note"], keys))
                except ValueError as e:
                    raise Bad(obj["tree_size"], f"checkpoint: {e}")
                continue
            expected = len(roots.leaves) + 1
            if obj["seq"] != expected:
                raise Bad(expected, f"expected seq {expected}, found {obj['seq']}")
            if bytes.fromhex(obj["prev_hash"]) != prev:
                raise Bad(obj["seq"], "prev_hash does not match the previous entry's hash")
            data = canonical(obj)
            if sha256(data).hex() != obj["hash"]:
                raise Bad(obj["seq"], "hash does not match the entry's contents")
            roots.leaves.append(leaf(data))
            prev = bytes.fromhex(obj["hash"])
    n = len(roots.leaves)
    for _origin, size, root in sorted(checkpoints, key=lambda c: c[1]):
        if size > n:
            raise Bad(n + 1, f"checkpoint at tree size {size} covers missing entries (the log ends at {n})")
        if roots.root(size) != root:
            raise Bad(size, f"Merkle root of the first {size} entries does not match the checkpoint")
    return n, len(checkpoints), roots.root(n)


def verify_vectors(path):
    v = json.load(open(path, encoding="utf-8"))
    prev = ZERO
    leaves = []
    for item in v["entries"]:
        e = item["entry"]
        data = canonical(e)
        assert data.hex() == item["canonical_bytes_hex"], f"canonical bytes of entry {e['seq']}"
        assert bytes.fromhex(e["prev_hash"]) == prev, f"prev_hash of entry {e['seq']}"
        assert sha256(data).hex() == item["hash"] == e["hash"], f"hash of entry {e['seq']}"
        assert leaf(data).hex() == item["leaf_hash"], f"leaf of entry {e['seq']}"
        leaves.append(leaf(data))
        prev = sha256(data)
    for size in (1, 2, 3):
        assert mth(leaves[:size]).hex() == v[f"merkle_root_size_{size}"], f"root of size {size}"
    key = parse_key(v["verifier_key"])
    origin, size, root = verify_note(v["checkpoint_note"], [key])
    assert size == 3 and root.hex() == v["merkle_root_size_3"], "checkpoint"
    # The published seed must give the published key.
    from nacl.signing import SigningKey
    assert bytes(SigningKey(bytes.fromhex(v["test_key_seed_hex"])).verify_key) == bytes(key[2])
    return len(leaves)


def main(argv):
    if len(argv) >= 2 and argv[0] == "vectors":
        n = verify_vectors(argv[1])
        print(f"OK: {n} test vectors, their Merkle roots and the signed checkpoint match")
        return 0
    if len(argv) >= 2 and argv[0] == "export":
        keys = []
        args = argv[2:]
        while args:
            if args[0] != "--public-key" or len(args) < 2:
                print(__doc__, file=sys.stderr)
                return 2
            text = open(args[1], encoding="utf-8").read()
            keys += [parse_key(line) for line in text.splitlines() if line.strip() and not line.startswith("#")]
            args = args[2:]
        try:
            n, c, root = verify_export(argv[1], keys)
        except Bad as e:
            print(f"FAILED: {e}", file=sys.stderr)
            return 1
        print(f"OK: {n} entries, {c} checkpoints, root {root.hex()}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
