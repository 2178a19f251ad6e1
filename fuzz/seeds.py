#!/usr/bin/env python3
"""Writes the checked-in seed corpus, fuzz/corpus/<target>/<name>.

Run from anywhere: `python3 fuzz/seeds.py`. It only (re)writes the seeds
below; files libFuzzer added to a corpus directory are left alone. The
seeds are small and readable where the target's input is text.
"""
import os
import random
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    path = os.path.join(ROOT, target)
    os.makedirs(path, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(path, name), "wb") as f:
        f.write(data)


# ids_and_event_types: a candidate name, also read as JSON.
ids = {
    "plain": "account-42",
    "tenant_path": "tenant/ç/order-1",
    "empty": "",
    "whitespace_only": "   ",
    "leading_space": " a",
    "control": "bad\x07id",
    "nul": "a\x00b",
    "longest": "a" * 255,
    "too_long": "a" * 256,
    "too_long_multibyte": "é" * 128,
    "event_type": "Deposited",
    "event_type_space": "has space",
    "json_string": '"account-42"',
    "json_empty_string": '""',
    "json_nul_escape": '"\\u0000"',
    "json_escaped_backslash": '"\\\\u0000"',
    "json_big_number": "1e400",
    "json_uuid": '"01890a5d-ac96-774b-bcce-b302099a8057"',
    "json_expected": '{"Exact":3}',
    "json_metadata": '{"command_id":"01890a5d-ac96-774b-bcce-b302099a8057",'
    '"correlation_id":"01890a5d-ac96-774b-bcce-b302099a8057","causation_id":null,'
    '"timestamp":5,"user":{"tenant":"acme"}}',
}
for name, text in ids.items():
    write("ids_and_event_types", name, text)

# event_decoding: type, schema version, payload (one per line).
decoding = {
    "deposited_v3": 'bank.Deposited\n3\n{"amount":5,"memo":null}',
    "deposited_v2": 'bank.Deposited\n2\n{"amount":5}',
    "deposited_v1_unqualified": "Deposited\n1\n5",
    "credited_alias_v2": 'Credited\n2\n{"amount":7}',
    "credited_alias_namespaced": 'bank.Credited\n3\n{"amount":7,"memo":"x"}',
    "renamed_v1": 'bank.Renamed\n1\n{"name":"x"}',
    "renamed_v2": 'bank.Renamed\n2\n"x"',
    "opened": "bank.Opened\n1\nnull",
    "opened_moved": "legacy.Opened\n1\nnull",
    "opened_moved_under_namespace": "bank.legacy.Opened\n1\nnull",
    "moved": "bank.Moved\n1\n[1,-2]",
    "tagged": 'bank.Tagged\n1\n{"tags":{"a":true,"b":false},"note":{"text":"t"}}',
    "limits": "bank.Limits\n1\n[1,null,65535]",
    "closed": 'bank.Closed\n1\n{"text":"bye","pinned":true}',
    "other_namespace": "user.Opened\n1\nnull",
    "unknown_type": "bank.Unknown\n1\n{}",
    "future_version": "bank.Deposited\n9\n{}",
    "upcast_fails": 'bank.Deposited\n1\n"five"',
    "duplicate_field": 'bank.Deposited\n3\n{"amount":1,"amount":2}',
    "broken_json": "bank.Deposited\n3\n{oops",
    "trailing": 'bank.Deposited\n3\n{"amount":1} {"amount":2}',
}
for name, text in decoding.items():
    write("event_decoding", name, text)

# postgres_conflict_detail: the request's expectations, then the DETAIL.
details = {
    "first": "ane7\n1 0",
    "no_stream": "n\n1 5",
    "last_of_four": "aaaa\n4 18446744073709551615",
    "index_zero": "e\n0 3",
    "index_outside": "n\n2 3",
    "not_a_version": "a\n1 x",
    "plus_sign": "a\n+1 5",
    "trailing_field": "a\n1 5 extra",
    "empty_detail": "a\n",
    "no_streams": "\n1 1",
    "negative": "3\n1 -1",
}
for name, text in details.items():
    write("postgres_conflict_detail", name, text)


# chaos_proxy_framing: one header byte (size limit, read sizes), then the
# protocol stream.
def msg(tag, body):
    return tag + struct.pack(">I", len(body) + 4) + body


def cstr(text):
    return text.encode() + b"\x00"


append_sql = 'SELECT * FROM "s".append($1, $2)'
extended = (
    msg(b"P", cstr("s1") + cstr(append_sql) + b"\x00\x00")
    + msg(b"B", cstr("") + cstr("s1") + b"\x00\x00\x00\x00\x00\x00")
    + msg(b"E", cstr("") + b"\x00\x00\x00\x00")
    + msg(b"S", b"")
)
replies = (
    msg(b"1", b"")
    + msg(b"2", b"")
    + msg(b"D", b"\x00\x01\x00\x00\x00\x01" + b"1")
    + msg(b"C", cstr("SELECT 1"))
    + msg(b"Z", b"I")
)
framing = {
    "append_extended": b"\x03" + extended,
    "server_replies": b"\x07" + replies,
    "both": b"\xff" + extended + replies,
    "simple_commit": b"\x02" + msg(b"Q", cstr("COMMIT;")) + msg(b"C", cstr("COMMIT")) + msg(b"Z", b"I"),
    "marked_append": b"\x0a" + msg(b"Q", cstr("/* eventcore append */ WITH claim AS (SELECT 1) SELECT 1")),
    "bad_length": b"\x01" + b"Z\x00\x00\x00\x02I",
    "too_long_for_limit": b"\x00" + msg(b"D", b"x" * 40),
    "partial": b"\x05" + msg(b"C", cstr("SELECT 1"))[:7],
    "empty": b"\x00",
}
for name, data in framing.items():
    write("chaos_proxy_framing", name, data)

# machine_store_responses: bytes that `arbitrary` decodes into a scenario and
# its answers; fixed pseudo-random seeds of several lengths, plus the
# all-zero input (one stream, faithful answers).
rng = random.Random(15)
write("machine_store_responses", "zeros_64", bytes(64))
for length in (16, 48, 128, 256, 512, 1024, 2048):
    write("machine_store_responses", "random_%d" % length, bytes(rng.randrange(256) for _ in range(length)))
