"""Failure reasons become one line without colour codes: what the ledger and the console keep."""

import traceback

from fedcomp.core.errors import one_line, strip_ansi

#: Flower's error reply for a ClientApp that raised on a Ray actor (shape of the real text).
RAY_REASON = (
    "client raised: <class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'\x1b[36mray::ClientAppActor.run()"
    "\x1b[39m (pid=9589, ip=192.0.2.2, actor_id=e517)\n"
    "                  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
    '  File "/work/main/fedcomp/flower/client_app.py", line 110, in client_train\n'
    '    raise InjectedFault(f"client {pid} crashed in round {server_round} (faults.crash)")\n'
    "fedcomp.flower.client_app.InjectedFault: client 1 crashed in round 3 (faults.crash)\n\n"
    "The above exception was the direct cause of the following exception:\n\n"
    "\x1b[36mray::ClientAppActor.run()\x1b[39m (pid=9589, ip=192.0.2.2)\n"
    '  File "/flwr/simulation/ray_transport/ray_actor.py", line 65, in run\n'
    "    raise ClientAppException(str(ex)) from ex\n"
    "flwr.clientapp.client_app.ClientAppException: \n"
    "Exception ClientAppException occurred. Message: client 1 crashed in round 3 (faults.crash)'>"
)


def test_a_ray_client_failure_becomes_the_exception_the_client_raised():
    assert one_line(RAY_REASON) == "InjectedFault: client 1 crashed in round 3 (faults.crash)"


def test_a_python_traceback_becomes_its_original_exception():
    try:
        try:
            {}["missing"]
        except KeyError as err:
            raise ValueError("bad value") from err
    except ValueError:
        text = traceback.format_exc()
    assert one_line(text) == "KeyError: 'missing'"


def test_plain_messages_keep_their_words_on_one_line_without_colour():
    assert one_line("payload does not decode:\n  packed model: 39207 B") == "payload does not decode: packed model: 39207 B"
    assert one_line("\x1b[91mERROR\x1b[0m: x") == "ERROR: x"
    assert strip_ansi("\x1b[1;31mred\x1b[0m") == "red"
    assert one_line("x" * 500, limit=10) == "x" * 9 + "…"


def test_flowers_envelope_without_a_traceback_becomes_its_message():
    reason = ("client raised: <class 'flwr.clientapp.client_app.ClientAppException'>:<'\n"
              "Exception ClientAppException occurred. Message: client 1 crashed in round 2 (faults.crash)'>")
    assert one_line(reason) == "client raised: client 1 crashed in round 2 (faults.crash)"
    assert one_line("<class 'MemoryError'>:<'out of memory'>") == "MemoryError: out of memory"
