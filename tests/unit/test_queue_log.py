"""Reading app_queue's log back into call records (pbx/queue_log.py)."""

from __future__ import annotations

from pbx.queue_log import queue_calls

LOG = """\
1795400000|NONE|NONE|NONE|QUEUESTART|
1795400010|17954.1|cityline-fallback|NONE|ENTERQUEUE||48600111222|1
1795400013|17954.1|cityline-fallback|PJSIP/agent-ola|CONNECT|3|17954.2|1
1795400100|17954.1|cityline-fallback|PJSIP/agent-ola|COMPLETECALLER|3|87|1
1795400200|17954.3|cityline-fallback|NONE|ENTERQUEUE||48600333444|1
1795400221|17954.3|cityline-fallback|NONE|ABANDON|1|1|21
1795400300|17954.5|other-queue|NONE|ENTERQUEUE||48600555666|1
garbage line
1795400400|17954.7|cityline-fallback|NONE|ENTERQUEUE||48600777888|1
x|17954.7|cityline-fallback|NONE|CONNECT|1
1795400500|17954.9|cityline-fallback|PJSIP/agent-ola|CONNECT|4|x|1
"""


def test_answered_abandoned_and_still_waiting_calls() -> None:
    answered, abandoned, waiting = queue_calls(LOG.splitlines(), "cityline-fallback")
    assert (answered.uniqueid, answered.caller, answered.member) == (
        "17954.1",
        "48600111222",
        "PJSIP/agent-ola",
    )
    assert (answered.entered_at, answered.answered_at, answered.ended_at) == (
        1795400010,
        1795400013,
        1795400100,
    )
    assert answered.wait_seconds == 3 and answered.outcome == "fallback"
    assert abandoned.answered_at is None and abandoned.wait_seconds == 21
    assert abandoned.ended_at == 1795400221 and abandoned.outcome == "fallback_abandoned"
    # a bad timestamp is skipped; a call whose entry is missing is ignored
    assert waiting.uniqueid == "17954.7" and waiting.answered_at is None
    assert waiting.ended_at is None


def test_other_queues_and_an_empty_log_give_nothing() -> None:
    assert queue_calls([], "cityline-fallback") == []
    assert [c.uniqueid for c in queue_calls(LOG.splitlines(), "other-queue")] == ["17954.5"]
