"""A network worker: one process that accepts associations on the shared listening socket.

Started by the supervisor as ``python -m dicombox.core.worker``. It holds no state another
worker needs: what it stores is in the store and index, what it announces goes to the
supervisor's event channel. It can die at any moment: an instance is acknowledged only
after it is durable, and a partial file is swept at the next start. It dies with its
supervisor (``parent_death``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
from typing import Any

from pydicom import config as pydicom_config

from dicombox.core.box import Box, load_plugins_and_config, open_box
from dicombox.core.events import EventChannelClient
from dicombox.core.logs import setup_logging
from dicombox.core.net.policy import AssociationPolicy, AssociationSlots
from dicombox.core.net.registry import ServiceRegistry
from dicombox.core.net.server import AssociationServer
from dicombox.core.net.service import Service
from dicombox.core.net.tls import server_context
from dicombox.core.parent_death import die_with_parent, end_orphan, is_orphaned

log = logging.getLogger("dicombox.worker")


def collect_services(box: Box) -> list[Service]:
    return [service for batch in box.hook.dicombox_services(box=box) for service in batch]


def build_server(
    box: Box, listener: socket.socket, tls_listener: socket.socket | None = None
) -> AssociationServer:
    config = box.config
    registry = ServiceRegistry(collect_services(box), config.box.ae_title)
    for title in registry.local_titles:  # build the context tables now, not on first call
        registry.acceptor_contexts(title, [])
    policy = AssociationPolicy(config, registry.local_titles | set(box.local_ae_titles()))
    slots = AssociationSlots(
        box.run_dir / "slots",
        config.network.max_associations,
        config.network.max_associations_per_host,
    )
    tls_context = server_context(config.network) if tls_listener is not None else None
    return AssociationServer(
        listener,
        registry,
        policy,
        config.network,
        slots,
        box.bus.publish,
        tls_listener,
        tls_context,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dicombox-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--config")
    parser.add_argument("--overrides", default="{}")
    parser.add_argument("--number", type=int, default=0)
    parser.add_argument("--tls-fd", type=int, default=-1)
    parser.add_argument("--supervisor", type=int, default=0, help="the supervisor's pid")
    args = parser.parse_args(argv)
    if args.supervisor:
        die_with_parent(args.supervisor)
    # Association threads block in I/O all the time; with the default 5 ms switch interval
    # a thread coming back from a recv() waits behind a busy one (the convoy effect).
    sys.setswitchinterval(0.0002)
    # Received values are stored as they came; checking every one against its VR's rules
    # on the hot path costs more than the rest of the header parse.
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    overrides: dict[str, Any] = json.loads(args.overrides)
    config, pm, infos = load_plugins_and_config(args.config, **overrides)
    setup_logging(config.log.level, config.log.format)
    box = open_box(config, pm, infos, role="worker")
    channel = EventChannelClient(box.run_dir / "events.sock")
    box.bus.subscribe("*", channel)
    listener = socket.socket(fileno=args.fd)
    tls_listener = socket.socket(fileno=args.tls_fd) if args.tls_fd >= 0 else None
    server = build_server(box, listener, tls_listener)
    if args.supervisor:
        server.orphaned = lambda: is_orphaned(args.supervisor)

    def _stop(signum: int, _frame: object) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
    box.bus.publish("worker.ready", number=args.number)
    log.debug("worker %d accepting", args.number)
    server.serve_forever()
    if args.supervisor and is_orphaned(args.supervisor):
        end_orphan()  # nothing in flight may be answered now (see parent_death)
    left = server.drain(
        box.config.network.dimse_timeout_s * 2,
        lambda n: log.info("finishing %d association(s) before exit", n),
    )
    if left:
        log.warning("worker exits with %d association(s) still open", left)
    channel.close()
    box.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
