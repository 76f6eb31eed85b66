"""Hanging up a cut caller's call from sipp's message trace."""

from __future__ import annotations

from cityline.simulated.sipp import bye_for_trace

SEP = "----------------------------------------------- 2026-11-23 06:58:36.812514"
INVITE = (
    "UDP message sent (602 bytes):\n\n"
    "INVITE sip:19115@127.0.0.1:40833 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:27246;branch=z9hG4bK-16951-1-1\r\n"
    "From: <sip:48600100200@127.0.0.1:27246>;tag=16951SIPpTag1\r\n"
    "To: <sip:19115@127.0.0.1:40833>\r\n"
    "Call-ID: 1-16951@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Content-Length: 0\r\n\r\n"
)
OK = (
    "UDP message received [771] bytes :\n\n"
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:27246;rport=27246;branch=z9hG4bK-16951-1-1\r\n"
    "Call-ID: 1-16951@127.0.0.1\r\n"
    "From: <sip:48600100200@127.0.0.1>;tag=16951SIPpTag1\r\n"
    "To: <sip:19115@127.0.0.1>;tag=f61a1e66\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:127.0.0.1:40833>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length:   229\r\n\r\n"
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"
)
PBX_BYE = (
    "UDP message received [400] bytes :\n\n"
    "BYE sip:48600100200@127.0.0.1:27246 SIP/2.0\r\n"
    "Call-ID: 1-16951@127.0.0.1\r\n"
    "CSeq: 5 BYE\r\n\r\n"
)


def trace(*entries: str) -> str:
    return "".join(f"{SEP}\n{entry}\n" for entry in entries)


def test_an_answered_call_gets_a_bye_in_its_dialog() -> None:
    bye = bye_for_trace(trace(INVITE, OK), 27246)
    assert bye is not None
    text = bye.decode()
    assert text.startswith("BYE sip:127.0.0.1:40833 SIP/2.0\r\n")
    assert "\r\nVia: SIP/2.0/UDP 127.0.0.1:27246;branch=z9hG4bK-" in text
    assert "\r\nFrom: <sip:48600100200@127.0.0.1>;tag=16951SIPpTag1\r\n" in text
    assert "\r\nTo: <sip:19115@127.0.0.1>;tag=f61a1e66\r\n" in text
    assert "\r\nCall-ID: 1-16951@127.0.0.1\r\n" in text
    assert "\r\nCSeq: 99 BYE\r\n" in text and text.endswith("\r\n\r\n")


def test_nothing_to_end_before_the_answer_or_after_a_bye() -> None:
    assert bye_for_trace(trace(INVITE), 27246) is None
    assert bye_for_trace(trace(INVITE, OK, PBX_BYE), 27246) is None
    assert bye_for_trace("", 27246) is None
