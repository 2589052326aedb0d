#!/usr/bin/env python3
"""benches/screening: post-dial delay as a caller sees it.

Sends CALLS INVITEs over UDP from 127.0.0.1 to TARGET (host:port), one at a
time at RATE per second, each claiming caller id +15550100 and calling
NUMBER; times INVITE -> its first final response (486 from the callee's
guest, or 608 from a policy's rejection) with a monotonic clock, ACKs it,
and prints one line: `n=.. p50_us=.. p99_us=.. max_us=.. statuses=486:..`.
SIPp's response times are whole milliseconds, too coarse for a delay of a
few hundred microseconds; this is the same exchange, timed in ns. Bounded:
every call waits at most 2 s; exits 1 if any call got no final answer.
"""
import socket, sys, time, uuid

target, number, calls, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
host, port = target.rsplit(":", 1)
dest = (host, int(port))
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
local = "127.0.0.1:%d" % sock.getsockname()[1]
sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def request(method, call_id, branch, tag, to_tag=""):
    body = sdp if method == "INVITE" else ""
    head = [
        f"{method} sip:{number}@{target} SIP/2.0",
        f"Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch}",
        f"From: <sip:+15550100@{local}>;tag={tag}",
        f"To: <sip:{number}@{target}>{to_tag}",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:+15550100@{local}>",
        "Max-Forwards: 70",
    ]
    if body:
        head.append("Content-Type: application/sdp")
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


times, statuses, lost = [], {}, 0
sock.settimeout(2.0)
for i in range(calls):
    start = time.monotonic()
    call_id, branch, tag = uuid.uuid4().hex, uuid.uuid4().hex[:16], uuid.uuid4().hex[:8]
    sent = time.perf_counter_ns()
    sock.sendto(request("INVITE", call_id, branch, tag), dest)
    final = None
    while final is None:
        try:
            data = sock.recv(65535).decode(errors="replace")
        except socket.timeout:
            break
        if call_id not in data:
            continue
        code = int(data.split(" ", 2)[1])
        if code >= 200:
            final = (code, time.perf_counter_ns(), data)
    if final is None:
        lost += 1
        continue
    code, got, data = final
    times.append((got - sent) / 1000)
    statuses[code] = statuses.get(code, 0) + 1
    to = next(l for l in data.split("\r\n") if l.lower().startswith("to:"))
    to_tag = to[to.find(">") + 1:] if ">" in to else ""
    sock.sendto(request("ACK", call_id, branch, tag, to_tag), dest)
    pause = start + 1 / rate - time.monotonic()
    if pause > 0:
        time.sleep(pause)

times.sort()
pick = lambda p: times[min(len(times) - 1, int(len(times) * p))] if times else float("nan")
print("n=%d lost=%d p50_us=%.0f p99_us=%.0f max_us=%.0f statuses=%s" % (
    len(times), lost, pick(0.50), pick(0.99), times[-1] if times else float("nan"),
    ",".join("%d:%d" % kv for kv in sorted(statuses.items()))))
sys.exit(1 if lost else 0)
