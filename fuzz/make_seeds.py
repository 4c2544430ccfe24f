#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/seeds/<target>/.

    python3 fuzz/make_seeds.py [PATH/TO/transcripts.md]

The BOSH seeds come from the real Prosody 0.12.3 transcripts in
docs/protocol/prosody-0.12.md (the default, found relative to this script):
every `<-` response body, every `->` request body, and whole transcripts as
handshake sequences. The HTML seeds are hand-written pages.
Re-running it rewrites the seeds deterministically; it never touches the
scratch corpora (fuzz/corpus/, gitignored).
"""

import hashlib
import os
import re
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(ROOT, "seeds")
SEP = b"\x00"  # RESPONSE_SEPARATOR in fuzz/src/lib.rs

# cm_response flag bytes (fuzz/src/lib.rs, `cm_response`): bits 0-1 login,
# bits 2-3 first RID. ASCII '0'..'3' = logins 0..3 with RID 1.
ANON, ALICE, ALICE_PLAIN, BOB_SCRAM = b"0", b"1", b"2", b"3"
RID_TRANSCRIPT = 1 << 2
RID_MAX = 2 << 2


def flag(login, rid_bits=0):
    return bytes([(login[0] & 3) | rid_bits])


def write(target, name, data):
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def short(data):
    return hashlib.sha1(data).hexdigest()[:10]


def transcripts(markdown):
    """(section title, [(direction, body)]) for each ### transcript."""
    sections = []
    title = None
    for line in markdown.splitlines():
        if line.startswith("### "):
            title = line[4:].strip()
            sections.append((title, []))
        m = re.match(r"^(->|<-) (<.*)$", line)
        if m and sections:
            sections[-1][1].append((m.group(1), m.group(2).encode()))
    return sections


def bosh_seeds(markdown):
    sections = transcripts(markdown)
    requests, responses = [], []
    for _, lines in sections:
        for direction, body in lines:
            (requests if direction == "->" else responses).append(body)

    # cm_response: each response alone, for each login.
    for body in dict.fromkeys(responses):
        write("cm_response", "response-" + short(body), ANON + body)

    # Whole handshakes: the four first transcripts of prosody-0.12.md.
    by_title = {t: [b for d, b in lines if d == "<-"] for t, lines in sections}
    for title, login, name in [
        ("ANONYMOUS on anon.localhost", ANON, "anonymous"),
        ("PLAIN as alice@localhost", ALICE_PLAIN, "plain"),
        ("SCRAM-SHA-1 as alice@localhost (resource `prebind` requested)", ALICE, "scram-alice"),
        (
            "SCRAM-SHA-1 as bob@localhost, with the optional session IQ sent (`--session always`)",
            BOB_SCRAM,
            "scram-bob",
        ),
    ]:
        bodies = by_title[title]
        write("cm_response", f"handshake-{name}", login + SEP.join(bodies))
        if name in ("anonymous", "plain"):
            for rid, rid_name in ((RID_TRANSCRIPT, "transcript"), (RID_MAX, "max")):
                write(
                    "cm_response",
                    f"handshake-{name}-rid-{rid_name}",
                    flag(login, rid) + SEP.join(bodies),
                )

    anon = by_title["ANONYMOUS on anon.localhost"]
    created, success, restarted, bound = anon
    sid = b"7d0aa91d-ded8-4d91-89b3-b4c918168c50"
    empty = b"<body xmlns='http://jabber.org/protocol/httpbind' sid='" + sid + b"'/>"
    required = restarted.replace(b"<optional/>", b"")
    session_result = (
        b"<body xmlns='http://jabber.org/protocol/httpbind' sid='" + sid + b"'>"
        b"<iq xmlns='jabber:client' type='result' id='sess_1'/></body>"
    )
    variants = {
        # Session IQ required (no <optional/>): five round trips.
        "session-required": [created, success, required, bound, session_result],
        # Features, SASL answer and bind result each come one poll late.
        "late-everything": [
            empty.replace(b"/>", b" wait='60' hold='1'/>"),
            created,
            empty,
            success,
            empty,
            restarted,
            empty,
            bound,
        ],
        # Never any features: Stalled after the polls.
        "stalled": [created.split(b"<stream:features")[0] + b"</body>"] + [empty] * 6,
        "terminate": [
            b"<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='host-unknown'/>"
        ],
        "stream-error": [
            created,
            b"<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='"
            + sid
            + b"'><stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bye</text></stream:error></body>",
        ],
        "binding-error": [created, b"<body xmlns='http://jabber.org/protocol/httpbind' type='error'/>"],
        "sasl-failure": [
            created,
            b"<body xmlns='http://jabber.org/protocol/httpbind' sid='" + sid + b"'>"
            b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/>"
            b"<text xml:lang='en'>nope</text></failure></body>",
        ],
        "bind-conflict": [
            created,
            success,
            restarted,
            b"<body xmlns='http://jabber.org/protocol/httpbind' sid='" + sid + b"'>"
            b"<iq xmlns='jabber:client' type='error' id='bind_1'><error type='cancel'>"
            b"<conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq></body>",
        ],
        "no-bind": [created, success, created.replace(b"<mechanisms", b"<x").replace(b"</mechanisms>", b"</x>")],
        "sid-mismatch": [created, success.replace(sid, b"other")],
        "missing-sid": [b"<body xmlns='http://jabber.org/protocol/httpbind'/>"],
        "bare-jid": [created, success, restarted, bound.replace(b"/GtONlPbg6nB5", b"")],
        "prefixed": [
            b"<b:body xmlns:b='http://jabber.org/protocol/httpbind' xmlns:s='http://etherx.jabber.org/streams' sid='x&amp;y' wait=' 30 '>"
            b"<s:features><m:mechanisms xmlns:m='urn:ietf:params:xml:ns:xmpp-sasl'><m:mechanism> ANONYMOUS </m:mechanism>"
            b"</m:mechanisms></s:features></b:body>",
            b"<body xmlns='http://jabber.org/protocol/httpbind' sid='x&amp;y'><success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><![CDATA[=]]></success></body>",
        ],
        "challenge-to-anonymous": [
            created,
            b"<body xmlns='http://jabber.org/protocol/httpbind' sid='" + sid + b"'>"
            b"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1hYmM=</challenge></body>",
        ],
    }
    for name, bodies in variants.items():
        write("cm_response", f"variant-{name}", ANON + SEP.join(bodies))
    # SCRAM with the harness's assistance (flag bit 4): byte 1 / 2 starts a
    # plain SCRAM challenge / success message, `%r` is the client nonce.
    scram_created = by_title["SCRAM-SHA-1 as bob@localhost, with the optional session IQ sent (`--session always`)"][0]
    sha256_created = scram_created.replace(b"SCRAM-SHA-1", b"SCRAM-SHA-256")
    first = b"\x01r=%rd42fc5f2-664d-4e6b-a154-a8e11e1fdbe0,s=ZGYzZDZmMmQtZmY5Ni00Yzg=,i=16"
    for name, login, bodies in [
        ("scram-sha1-wrong-signature", BOB_SCRAM, [scram_created, first, b"\x02v=zYiP90K+7rB+oqobJUWKFuPOSl0="]),
        ("scram-sha256-server-error", BOB_SCRAM, [sha256_created, first, b"\x02e=invalid-proof"]),
        ("scram-iterations-over-cap", BOB_SCRAM, [scram_created, first.replace(b"i=16", b"i=1000001")]),
        ("scram-bad-nonce", ALICE, [scram_created, b"\x01r=abc,s=c2FsdA==,i=16"]),
        ("scram-extensions", ALICE, [sha256_created, first + b",x=ext", b"\x01r=%r,s=,i=1"]),
    ]:
        write("cm_response", f"assisted-{name}", bytes([login[0] & 3 | 0x10]) + SEP.join(bodies))
        write("cm_response", f"assisted-cached-{name}", bytes([login[0] & 3 | 0x30]) + SEP.join(bodies))

    plain_created = [b for d, b in dict(sections)["PLAIN as alice@localhost"] if d == "<-"][0]
    write(
        "cm_response",
        "variant-scram256-offered",
        ALICE
        + plain_created.replace(b"<mechanism>SCRAM-SHA-1</mechanism>", b"<mechanism>SCRAM-SHA-256</mechanism>"),
    )

    # prebind_request: the creation requests and every other request, as the
    # crate reads any <body/>, plus hand-made variants.
    for body in dict.fromkeys(requests):
        write("prebind_request", "request-" + short(body), body)
    ns = b"xmlns='http://jabber.org/protocol/httpbind'"
    max_first_rid = (1 << 53) - 1 - 10
    for name, body in {
        "empty": b"",
        "blank": b" \r\n\t",
        "minimal": b"<body " + ns + b"/>",
        "no-namespace": b"<body to='localhost' rid='42'/>",
        "all": b"<body " + ns + b" to='anon.localhost' rid='1062715484561' wait='59' hold='1'/>",
        "rid-max": b"<body " + ns + b" rid='%d'/>" % max_first_rid,
        "rid-max-plus-1": b"<body " + ns + b" rid='%d'/>" % (max_first_rid + 1),
        "rid-zero": b"<body " + ns + b" rid='0'/>",
        "rid-u64-overflow": b"<body " + ns + b" rid='18446744073709551616'/>",
        "padded-numbers": b"<body " + ns + b" rid=' 007 ' wait='\t60 ' hold='00'/>",
        "huge-wait": b"<body " + ns + b" wait='99999999999' hold='4294967296'/>",
        "entities": b"<body " + ns + b" to='ex&#97;mple.org&#x2E;' rid='&#49;2'/>",
        "with-children": b"<body " + ns + b" to='localhost'><iq xmlns='jabber:client'/><x/></body>",
        "prefixed": b"<h:body xmlns:h='http://jabber.org/protocol/httpbind' to='localhost' rid='5'/>",
        "wrong-namespace": b"<body xmlns='urn:other' rid='5'/>",
        "jid-to": b"<body " + ns + b" to='alice@localhost/res'/>",
        "upper-to": b"<body " + ns + b" to='LocalHost.'/>",
        "xml-decl": b"<?xml version='1.0' encoding='utf-8'?>\n<body " + ns + b" to='localhost'/>",
        "comment": b"<!-- c --><body " + ns + b"/><!-- d -->",
        "doctype": b"<!DOCTYPE body [<!ENTITY x 'y'>]><body " + ns + b" to='&x;'/>",
        "truncated": b"<body rid='1' " + ns + b" to='localhost' wait='60' hold='1' ver='1.6'",
        "duplicate-attribute": b"<body " + ns + b" rid='1' rid='2'/>",
    }.items():
        write("prebind_request", name, body)


# html_scanner layout (fuzz/src/lib.rs, `html_scanner`): flags, [marker len,
# marker text], K, K % 17 chunk sizes, page.
def sasl2_seeds():
    """Prosody 13 SASL2 + Bind 2 (+ FAST) logins, from the transcripts of
    docs/protocol/prosody-13-sasl2.md with the parts shortened there filled in
    (the same bodies as the unit tests of src/protocol/handshake.rs)."""
    sid = b"dbdf1a67-9b4e-4d43-9b07-3c5f0e8e6f15"
    head = b"<body xmlns='http://jabber.org/protocol/httpbind' xmlns:stream='http://etherx.jabber.org/streams' sid='" + sid + b"'"

    def created(domain, mechanisms, fast=False):
        mechs = b"".join(b"<mechanism>" + m + b"</mechanism>" for m in mechanisms)
        inline = (
            b"<inline><bind xmlns='urn:xmpp:bind:0'><inline><feature var='urn:xmpp:carbons:2'/>"
            b"<feature var='urn:xmpp:csi:0'/><feature var='urn:xmpp:sm:3'/></inline></bind>"
            + (b"<fast xmlns='urn:xmpp:fast:0'><mechanism>HT-SHA-256-NONE</mechanism></fast>" if fast else b"")
            + b"<sm xmlns='urn:xmpp:sm:3'/></inline>"
        )
        return (
            head + b" hold='1' xmlns:xmpp='urn:xmpp:xbosh' ver='1.6' secure='true' polling='5' inactivity='60'"
            b" requests='2' wait='10' xmpp:version='1.0' from='" + domain + b"'><stream:features xmlns='jabber:client'>"
            b"<authentication xmlns='urn:xmpp:sasl:2'>" + mechs + inline + b"</authentication>"
            b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + mechs + b"</mechanisms></stream:features></body>"
        )

    features = (
        b"<stream:features xmlns='jabber:client'><sub xmlns='urn:xmpp:features:pre-approval'/>"
        b"<ver xmlns='urn:xmpp:features:rosterver'/><sm xmlns='urn:xmpp:sm:3'><optional/></sm></stream:features>"
    )

    def success(jid, extra=b""):
        return (
            head + b"><success xmlns='urn:xmpp:sasl:2'>" + extra + b"<bound xmlns='urn:xmpp:bind:0'/>"
            b"<authorization-identifier>" + jid + b"</authorization-identifier></success>" + features + b"</body>"
        )

    token = (
        b"<token xmlns='urn:xmpp:fast:0' expiry='2026-12-22T01:38:23.035212Z'"
        b" token='secret-token:fast-QZJcpgSVneGZMOh4IQ4HOYvu6-J0jgWC8oZ4'/>"
    )
    anon = [created(b"anon.localhost", [b"ANONYMOUS"]), success(b"l0gcrcfkv0fb_ztauu1utbzh@anon.localhost/5axm7rCq-2An")]
    plain = [
        created(b"localhost", [b"SCRAM-SHA-1", b"OAUTHBEARER", b"PLAIN"], fast=True),
        success(b"alice@localhost/webapp~SF2OAu43unoa", token),
    ]
    write("cm_response", "handshake-sasl2-anonymous", ANON + SEP.join(anon))
    write("cm_response", "handshake-sasl2-plain-token", ALICE_PLAIN + SEP.join(plain))
    failures = {
        "fast-malformed": b"<failure xmlns='urn:xmpp:sasl:2'><malformed-request/><text>FAST is not available on this stream</text></failure>",
        "not-authorized": b"<failure xmlns='urn:xmpp:sasl:2'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></failure>",
        "continue": b"<continue xmlns='urn:xmpp:sasl:2'><additional-data>SSdtIGJvcmVkIG5vdy4=</additional-data><tasks><task>HOTP-EXAMPLE</task></tasks></continue>",
        "challenge": b"<challenge xmlns='urn:xmpp:sasl:2'>cj1hWnNLLHM9YzJGc2RBPT0saT00MDk2</challenge>",
    }
    for name, element in failures.items():
        write("cm_response", f"sasl2-{name}", ALICE_PLAIN + plain[0] + SEP + head + b">" + element + b"</body>")


def html(name, page, sizes=(), marker=None):
    head = bytearray()
    if marker is None:
        head.append(0)
    else:
        head += bytes([1, len(marker) - 1]) + marker
    head.append(len(sizes))
    head += bytes(sizes)
    write("html_scanner", name, bytes(head) + page)


def html_seeds():
    page = (
        b"<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        b"<title>Chat </head> demo</title>\n"
        b"<!-- a comment with </head> and <body> inside -->\n"
        b"<script>if (a </head> b) { s = '<body>'; }</script>\n"
        b"<style>/* </head> */ body { color: red }</style>\n"
        b"<link rel=stylesheet href=\"a.css\" data-x='</head>'>\n"
        b"</head>\n<body class=\"chat\">\n<p>Hello</p>\n</body>\n</html>\n"
    )
    html("page", page, (7, 1, 30))
    html("page-one-byte-chunks", page, (1,))
    html("page-whole", page, (255,))
    html(
        "marker-in-head",
        b"<html><head><meta charset=utf-8><!--xmpp-prebind--><link rel=icon></head><body></body></html>",
        (3, 5),
    )
    html(
        "marker-in-body",
        b"<html><head></head><body><div id=app></div><!--xmpp-prebind--></body></html>",
        (11, 0, 2),
    )
    html("custom-marker", b"<head><!--chat--><!-- chat --></head>", (4,), marker=b"chat")
    html("no-head", b"<!doctype html><BODY onload='x()'>hi</BODY>", (2,))
    html("no-head-no-body", b"<p>hello <b>world</b></p> trailing <", (6,))
    html(
        "raw-text",
        b"<head><textarea></head></textarea><noscript></head></noscript><xmp></head></xmp>"
        b"<iframe></head></iframe><script></scriptx></head></script ><title>x</title>\n</HEAD\t>",
        (1, 2, 3),
    )
    html(
        "bogus",
        b"<!doctype html><?php echo '</head>'; ?><!></head><!-->x<!---->y<!-- -- --!>z</ head></head>",
        (5, 9),
    )
    html("attributes", b"<div title=\"</head>\" data-a='<body>' b = \"x>\" c=d>e</div></head>", (13,))
    html("empty", b"", ())
    html("whole", b"<html><head><title>x</title></head><body></body></html>", ())
    html("lt-runs", b"<<<</<head</bodyx<body\x00>", (1,))


def main():
    md_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "docs", "protocol", "prosody-0.12.md")
    with open(md_path, encoding="utf-8") as f:
        markdown = f.read()
    for target in ("cm_response", "prebind_request", "html_scanner"):
        folder = os.path.join(SEEDS, target)
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                os.remove(os.path.join(folder, name))
    bosh_seeds(markdown)
    sasl2_seeds()
    html_seeds()
    for target in sorted(os.listdir(SEEDS)):
        files = os.listdir(os.path.join(SEEDS, target))
        size = sum(os.path.getsize(os.path.join(SEEDS, target, n)) for n in files)
        print(f"{target}: {len(files)} seeds, {size} bytes")


if __name__ == "__main__":
    main()
