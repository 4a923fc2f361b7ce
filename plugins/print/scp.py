"""Basic Grayscale and Basic Color Print Management SCP (PS3.4 Annex H): the DIMSE side
of the print state machine whose model is in ``session``.

An association creates a film session (N-CREATE), film boxes in it (N-CREATE, which
creates their image boxes), fills image boxes (N-SET) and prints a film box or the whole
session (N-ACTION); each film box printed becomes one ``Film`` handed to ``submit``. All
of it is per association and is dropped when the association ends.

Where PS3.4 leaves a choice, the one taken here:

- One film session per association (PS3.4 H.4.1, as DCMTK's print SCP does): a second
  N-CREATE is refused with 0x0110, or 0x0111 when it repeats the first one's UID.
- A film box N-CREATE while others exist adds one: this SCP prints whole film sessions
  (collation), so the C616 refusal of Table H.4.2.2.1.2-1 never applies and nothing is
  replaced. A film session N-ACTION prints every film box still in the session.
- Out of order: a film box without a film session is 0x0110 (processing failure, the
  SCU has to create the session first); an image box, film box or session that does not
  exist on this association, including one deleted, is 0x0112.
- A value we cannot use is 0x0106 (the warning 0x0116 would tell the SCU it succeeded).
  N-CREATE ignores attributes its class does not define; an N-SET that tries to change
  what only the N-CREATE sets (a film box's layout) is 0x0105.
- A Presentation LUT given as a LUT sequence rather than a shape is refused (0x0106).
  References to a Presentation LUT are resolved when made, so deleting it later is fine.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterator

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicombox.core.net.commands import N_ACTION_RQ, N_CREATE_RQ, N_DELETE_RQ, N_GET_RQ, N_SET_RQ
from dicombox.core.net.dataset_codec import decode_dataset, encode_dataset
from dicombox.core.net.service import Peer, Reply, Request, Service, SupportedContext
from dicombox.plugins.print import session as model
from dicombox.plugins.print.film import Film
from dicombox.plugins.print.session import (
    COLOR_SEQUENCE,
    GRAYSCALE_SEQUENCE,
    FilmBoxState,
    FilmSessionState,
    PrintAssociation,
    Refusal,
    tag_of,
)

log = logging.getLogger("dicombox.print")

_FILM_SESSION = "1.2.840.10008.5.1.1.1"
_FILM_BOX = "1.2.840.10008.5.1.1.2"
_GRAYSCALE_IMAGE_BOX = "1.2.840.10008.5.1.1.4"
_COLOR_IMAGE_BOX = "1.2.840.10008.5.1.1.4.1"
_PRINTER = "1.2.840.10008.5.1.1.16"
_PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"  # the well-known Printer SOP Instance
_PRESENTATION_LUT = "1.2.840.10008.5.1.1.23"
_GRAYSCALE_META = "1.2.840.10008.5.1.1.9"
_COLOR_META = "1.2.840.10008.5.1.1.18"
_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_CLASS_NAMES = {
    _FILM_SESSION: "Basic Film Session",
    _FILM_BOX: "Basic Film Box",
    _GRAYSCALE_IMAGE_BOX: "Basic Grayscale Image Box",
    _COLOR_IMAGE_BOX: "Basic Color Image Box",
    _PRINTER: "Printer",
    _PRESENTATION_LUT: "Presentation LUT",
}
# Which SOP classes each negotiated abstract syntax covers (PS3.4 H.3.1, H.3.2).
_CONTEXT_CLASSES = {
    _GRAYSCALE_META: {_FILM_SESSION, _FILM_BOX, _GRAYSCALE_IMAGE_BOX, _PRINTER},
    _COLOR_META: {_FILM_SESSION, _FILM_BOX, _COLOR_IMAGE_BOX, _PRINTER},
    _PRESENTATION_LUT: {_PRESENTATION_LUT},
}
PRINT_ACTION = 1  # Action Type ID of "print" on a film session or film box (PS3.4 H.4.1.2.4)
IDLE_LIMIT_S = 3600.0  # an association's state older than this goes when a session starts
_COMMENT_MAX = 64  # Error Comment is LO
# Response fields that carry the offending tags (PS3.7 10.1.2.1.7, 10.1.3.1.7).
_LISTS_TAGS = {N_SET_RQ, N_GET_RQ}

FilmCheck = Callable[[Dataset], list[str]]
ImageBoxCheck = Callable[[Dataset, bool, int], list[str]]
Operation = Callable[[Request], Reply]


class PrintSCP:
    """The print SCP: per-association film sessions, handed to ``submit`` film by film.

    ``submit(film, peer)`` queues one printed film box; ``printer_status()`` answers
    Printer N-GET with (Printer Status, Printer Status Info, further Printer attributes by
    keyword). The ``check_*`` hooks return problems with a request's values (any → 0x0106):
    film session and film box checks get the attributes the object would have after the
    request; the image box check gets the N-SET's attributes, whether the box is colour
    and how many image positions its film box has. ``annotations(peer)`` gives the text
    lines printed on each film.
    """

    def __init__(
        self,
        submit: Callable[[Film, Peer], None],
        printer_status: Callable[[], tuple[str, str, dict[str, str]]],
        check_film_box: FilmCheck | None = None,
        check_film_session: FilmCheck | None = None,
        check_image_box: ImageBoxCheck | None = None,
        annotations: Callable[[Peer], list[str]] | None = None,
    ) -> None:
        self.submit = submit
        self.printer_status = printer_status
        self.check_film_box = check_film_box
        self.check_film_session = check_film_session
        self.check_image_box = check_image_box
        self.annotations = annotations
        self._associations: dict[str, PrintAssociation] = {}
        self._lock = threading.Lock()
        self._operations: dict[tuple[int, str], Operation] = {
            (N_CREATE_RQ, _FILM_SESSION): self._create_film_session,
            (N_CREATE_RQ, _FILM_BOX): self._create_film_box,
            (N_CREATE_RQ, _PRESENTATION_LUT): self._create_presentation_lut,
            (N_SET_RQ, _FILM_SESSION): self._set_film_session,
            (N_SET_RQ, _FILM_BOX): self._set_film_box,
            (N_SET_RQ, _GRAYSCALE_IMAGE_BOX): self._set_image_box,
            (N_SET_RQ, _COLOR_IMAGE_BOX): self._set_image_box,
            (N_GET_RQ, _PRINTER): self._get_printer,
            (N_ACTION_RQ, _FILM_SESSION): self._print_film_session,
            (N_ACTION_RQ, _FILM_BOX): self._print_film_box,
            (N_DELETE_RQ, _FILM_SESSION): self._delete_film_session,
            (N_DELETE_RQ, _FILM_BOX): self._delete_film_box,
            (N_DELETE_RQ, _PRESENTATION_LUT): self._delete_presentation_lut,
        }

    # -- what the plugin wires up ---------------------------------------------------------

    def services(self, ae_titles: tuple[str, ...] = ()) -> list[Service]:
        """The print service: both meta SOP classes and the Presentation LUT SOP class."""
        handler = {
            N_CREATE_RQ: self.handle_create,
            N_SET_RQ: self.handle_set,
            N_GET_RQ: self.handle_get,
            N_ACTION_RQ: self.handle_action,
            N_DELETE_RQ: self.handle_delete,
        }
        contexts = [
            SupportedContext(uid, _SYNTAXES)
            for uid in (_GRAYSCALE_META, _COLOR_META, _PRESENTATION_LUT)
        ]
        return [
            Service(
                name="print",
                contexts=contexts,
                handlers=handler,
                permissions=dict.fromkeys(handler, "print"),
                ae_titles=ae_titles,
                association_ended=self.association_ended,
            )
        ]

    def association_ended(self, association_id: str) -> None:
        """Forget everything the association created (PS3.4 H.2: its instances end with it)."""
        with self._lock:
            gone = self._associations.pop(association_id, None)
        if gone is not None and gone.session is not None:
            log.info("print session of %s ended with its association", gone.calling_ae)

    def handle_create(self, request: Request) -> Iterator[Reply]:
        """N-CREATE of a Basic Film Session, Basic Film Box or Presentation LUT."""
        yield self._answer(request)

    def handle_set(self, request: Request) -> Iterator[Reply]:
        """N-SET of a Basic Film Session, Basic Film Box or Basic Grayscale/Color Image Box."""
        yield self._answer(request)

    def handle_get(self, request: Request) -> Iterator[Reply]:
        """N-GET of the Printer."""
        yield self._answer(request)

    def handle_action(self, request: Request) -> Iterator[Reply]:
        """N-ACTION (print) of a Basic Film Session or Basic Film Box."""
        yield self._answer(request)

    def handle_delete(self, request: Request) -> Iterator[Reply]:
        """N-DELETE of a Basic Film Session, Basic Film Box or Presentation LUT."""
        yield self._answer(request)

    # -- dispatch -------------------------------------------------------------------------

    def _answer(self, request: Request) -> Reply:
        """Run the operation the request asks for; never raises."""
        try:
            reply = self._operation(request)(request)
            comment = str(reply.fields.get("ErrorComment", ""))
        except Refusal as refusal:
            reply, comment = _refusal_reply(request, refusal), refusal.comment
        except Exception as exc:  # a handler must answer, whatever went wrong
            log.exception("print %s from %s failed", _what(request), request.peer.calling_ae)
            comment = f"{type(exc).__name__}: {exc}"
            reply = Reply(model.PROCESSING_FAILURE, fields={"ErrorComment": _comment(comment)})
        if reply.status != model.SUCCESS:
            _log_refusal(request, reply.status, comment)  # the whole comment, not 64 chars
        return reply

    def _operation(self, request: Request) -> Operation:
        """The operation for the request's command and SOP class, checked against the
        presentation context it came on."""
        sop_class = request.command.sop_class_uid
        if sop_class not in _CLASS_NAMES:
            raise Refusal(model.NO_SUCH_SOP_CLASS, f"SOP class {sop_class} is not print")
        abstract = request.context.abstract_syntax
        if sop_class not in _CONTEXT_CLASSES.get(abstract, ()):
            raise Refusal(
                model.NO_SUCH_SOP_CLASS, f"{_CLASS_NAMES[sop_class]} not on context {abstract}"
            )
        operation = self._operations.get((request.command.field, sop_class))
        if operation is None:
            raise Refusal(model.UNRECOGNIZED_OPERATION, f"{_what(request)} not supported")
        return operation

    def _association(self, request: Request) -> PrintAssociation:
        """The association's print state, made on first use."""
        key = _key(request.peer)
        with self._lock:
            state = self._associations.get(key)
            if state is None:
                state = self._associations[key] = PrintAssociation(request.peer.calling_ae)
        state.touched = time.monotonic()
        return state

    def _drop_idle(self) -> None:
        """Forget associations idle longer than IDLE_LIMIT_S, in case an end went unreported."""
        limit = time.monotonic() - IDLE_LIMIT_S
        with self._lock:
            idle = [key for key, state in self._associations.items() if state.touched < limit]
            for key in idle:
                state = self._associations.pop(key)
                log.info("print state of %s dropped after an idle hour", state.calling_ae)

    # -- Basic Film Session (PS3.4 H.4.1) -------------------------------------------------

    def _create_film_session(self, request: Request) -> Reply:
        state = self._association(request)
        uid = request.command.AffectedSOPInstanceUID or str(generate_uid())
        if state.session is not None:
            if state.session.uid == uid:
                raise Refusal(model.DUPLICATE_INSTANCE, f"film session {uid} exists")
            raise Refusal(model.PROCESSING_FAILURE, "a film session exists on this association")
        if state.holds(uid):
            raise Refusal(model.DUPLICATE_INSTANCE, f"{uid} is in use")
        attributes, ignored = model.split_attributes(
            _decode(request), model.FILM_SESSION_ATTRIBUTES
        )
        model.check_film_session(attributes)
        _run_check(self.check_film_session, attributes)
        lut = _lut_reference(state, attributes, None)
        attributes = model.with_defaults(attributes, model.FILM_SESSION_DEFAULTS)
        state.session = FilmSessionState(uid, attributes, lut_shape=lut)
        self._drop_idle()
        _log_ignored(request, ignored)
        log.info("print: film session %s created by %s", uid, state.calling_ae)
        return Reply(
            model.SUCCESS,
            dataset=_encode(attributes, request),
            fields={"AffectedSOPInstanceUID": uid},
        )

    def _set_film_session(self, request: Request) -> Reply:
        state = self._association(request)
        session = _session(state, request.command.sop_instance_uid)
        attributes, ignored = model.split_attributes(
            _decode(request), model.FILM_SESSION_ATTRIBUTES
        )
        model.check_film_session(attributes)
        after = model.merged(session.attributes, attributes)
        _run_check(self.check_film_session, after)
        session.lut_shape = _lut_reference(state, attributes, session.lut_shape)
        session.attributes = after
        _log_ignored(request, ignored)
        return Reply(model.SUCCESS)

    def _print_film_session(self, request: Request) -> Reply:
        _require_print_action(request)
        session = _session(self._association(request), request.command.sop_instance_uid)
        if not session.film_boxes:
            raise Refusal(model.NO_FILM_BOX, "film session contains no film box")
        boxes = list(session.film_boxes.values())
        filled = [box for box in boxes if box.images]
        self._submit(request, session, filled, model.SESSION_NOT_QUEUED)
        if len(filled) < len(boxes):
            empty = len(boxes) - len(filled)
            comment = f"{empty} film box(es) without images not printed"
            return Reply(model.EMPTY_PAGE_IN_SESSION, fields={"ErrorComment": comment})
        return Reply(model.SUCCESS)

    def _delete_film_session(self, request: Request) -> Reply:
        state = self._association(request)
        session = _session(state, request.command.sop_instance_uid)
        state.session = None  # and with it its film boxes and image boxes
        log.info("print: film session %s deleted by %s", session.uid, state.calling_ae)
        return Reply(model.SUCCESS)

    # -- Basic Film Box (PS3.4 H.4.2) -----------------------------------------------------

    def _create_film_box(self, request: Request) -> Reply:
        state = self._association(request)
        if state.session is None:
            raise Refusal(
                model.PROCESSING_FAILURE, "no film session: N-CREATE a Basic Film Session first"
            )
        uid = request.command.AffectedSOPInstanceUID or str(generate_uid())
        if state.holds(uid):
            raise Refusal(model.DUPLICATE_INSTANCE, f"{uid} is in use")
        attributes, ignored = model.split_attributes(_decode(request), model.FILM_BOX_ATTRIBUTES)
        model.require(attributes, "ImageDisplayFormat")
        model.require(attributes, "ReferencedFilmSessionSequence")
        _check_session_reference(attributes, state.session)
        positions = model.image_positions(str(attributes.ImageDisplayFormat))
        model.check_film_box(attributes)
        _run_check(self.check_film_box, attributes)
        lut = _lut_reference(state, attributes, None)
        attributes = model.with_defaults(attributes, model.FILM_BOX_DEFAULTS)
        color = request.context.abstract_syntax == _COLOR_META
        box = FilmBoxState.create(uid, color, attributes, positions, lut)
        state.session.film_boxes[uid] = box
        _log_ignored(request, ignored)
        log.info(
            "print: film box %s (%s, %s) created by %s",
            uid,
            attributes.ImageDisplayFormat,
            "colour" if color else "grey",
            state.calling_ae,
        )
        return Reply(
            model.SUCCESS,
            dataset=_encode(_film_box_response(box), request),
            fields={"AffectedSOPInstanceUID": uid},
        )

    def _set_film_box(self, request: Request) -> Reply:
        state = self._association(request)
        box = _film_box(state, request.command.sop_instance_uid)
        ds = _decode(request)
        fixed = [int(elem.tag) for elem in ds if elem.keyword in model.FILM_BOX_CREATE_ONLY]
        if fixed:
            raise Refusal(model.NO_SUCH_ATTRIBUTE, "only N-CREATE sets the film box layout", fixed)
        attributes, ignored = model.split_attributes(ds, model.FILM_BOX_SETTABLE)
        model.check_film_box(attributes)
        after = model.merged(box.attributes, attributes)
        _run_check(self.check_film_box, after)
        box.lut_shape = _lut_reference(state, attributes, box.lut_shape)
        box.attributes = after
        _log_ignored(request, ignored)
        return Reply(model.SUCCESS)

    def _print_film_box(self, request: Request) -> Reply:
        _require_print_action(request)
        state = self._association(request)
        box = _film_box(state, request.command.sop_instance_uid)
        if not box.images:  # PS3.4 Table H.4-9: an empty page is a warning, not a film
            comment = "film box contains no image box"
            return Reply(model.EMPTY_FILM_BOX, fields={"ErrorComment": comment})
        assert state.session is not None  # a film box lives in its session
        self._submit(request, state.session, [box], model.FILM_BOX_NOT_QUEUED)
        return Reply(model.SUCCESS)

    def _delete_film_box(self, request: Request) -> Reply:
        state = self._association(request)
        box = _film_box(state, request.command.sop_instance_uid)
        assert state.session is not None
        del state.session.film_boxes[box.uid]  # its image boxes go with it
        return Reply(model.SUCCESS)

    def _submit(
        self, request: Request, session: FilmSessionState, boxes: list[FilmBoxState], fail: int
    ) -> None:
        """Hand each film box to ``submit`` as a film; ``fail`` when one cannot be queued."""
        for done, box in enumerate(boxes):
            lines = self.annotations(request.peer) if self.annotations else []
            film = model.film_for(session, box, lines)
            try:
                self.submit(film, request.peer)
            except Exception as exc:
                log.exception("print: film box %s could not be queued", box.uid)
                raise Refusal(fail, f"{done} of {len(boxes)} films queued: {exc}") from exc
            log.info(
                "print: film box %s of %s queued, %d image(s), %d copies",
                box.uid,
                request.peer.calling_ae,
                len(film.images),
                film.copies,
            )

    # -- Basic Grayscale / Color Image Box (PS3.4 H.4.3) ----------------------------------

    def _set_image_box(self, request: Request) -> Reply:
        state = self._association(request)
        uid = request.command.sop_instance_uid
        found = state.image_slot(uid)
        if found is None:
            raise Refusal(model.NO_SUCH_INSTANCE, f"no image box {uid} (create a film box)")
        box, slot = found
        kind = "colour" if box.color else "grey"
        if request.command.sop_class_uid != _image_box_class(box):
            raise Refusal(model.CLASS_INSTANCE_CONFLICT, f"image box {uid} is {kind}")
        ds = _decode(request)
        own, other = (COLOR_SEQUENCE, GRAYSCALE_SEQUENCE)[:: 1 if box.color else -1]
        if other in ds:  # the image of the other meta SOP class
            raise Refusal(model.INVALID_VALUE, f"{other} in a {kind} image box", [tag_of(other)])
        attributes, ignored = model.split_attributes(ds, model.IMAGE_BOX_ATTRIBUTES | {own})
        model.require(attributes, "ImageBoxPosition")
        if model.read_int(attributes, "ImageBoxPosition") != slot.position:
            raise Refusal(
                model.INVALID_VALUE,
                f"Image Box Position {attributes.ImageBoxPosition} is not {slot.position}",
                [tag_of("ImageBoxPosition")],
            )
        model.check_image_box(attributes)
        _run_check(self.check_image_box, attributes, box.color, len(box.slots))
        # An image box may reference a Presentation LUT (PS3.4 H.4.3.1.2.1); it must exist,
        # but a film has one shape, the film box's.
        _lut_reference(state, attributes, None)
        slot.image = model.read_image(attributes, box.color, slot.position)
        _log_ignored(request, ignored)
        return Reply(model.SUCCESS)

    # -- Printer (PS3.4 H.4.6) ------------------------------------------------------------

    def _get_printer(self, request: Request) -> Reply:
        uid = request.command.sop_instance_uid
        if uid != _PRINTER_INSTANCE:
            raise Refusal(model.NO_SUCH_INSTANCE, f"the printer is {_PRINTER_INSTANCE}")
        status, info, extra = self.printer_status()
        values = {"PrinterStatus": status, "PrinterStatusInfo": info, **extra}
        ds = Dataset()
        for keyword, value in values.items():
            if keyword in model.PRINTER_ATTRIBUTES:
                setattr(ds, keyword, value)
        wanted = request.command.AttributeIdentifierList
        if wanted:
            ds = _restricted(ds, wanted)
        return Reply(model.SUCCESS, dataset=_encode(ds, request))

    # -- Presentation LUT (PS3.4 H.4.9) ---------------------------------------------------

    def _create_presentation_lut(self, request: Request) -> Reply:
        state = self._association(request)
        uid = request.command.AffectedSOPInstanceUID or str(generate_uid())
        if state.holds(uid):
            raise Refusal(model.DUPLICATE_INSTANCE, f"{uid} is in use")
        ds = _decode(request)
        if "PresentationLUTSequence" in ds:
            raise Refusal(
                model.INVALID_VALUE,
                "Presentation LUT Sequence not supported; use a shape",
                [tag_of("PresentationLUTSequence")],
            )
        model.require(ds, "PresentationLUTShape")
        shape = str(ds.PresentationLUTShape).strip()
        if shape not in model.LUT_SHAPES:
            raise Refusal(
                model.INVALID_VALUE,
                f"Presentation LUT Shape {shape!r}",
                [tag_of("PresentationLUTShape")],
            )
        state.luts[uid] = shape
        response = Dataset()
        response.PresentationLUTShape = shape
        return Reply(
            model.SUCCESS,
            dataset=_encode(response, request),
            fields={"AffectedSOPInstanceUID": uid},
        )

    def _delete_presentation_lut(self, request: Request) -> Reply:
        state = self._association(request)
        uid = request.command.sop_instance_uid
        if state.luts.pop(uid, None) is None:
            raise Refusal(model.NO_SUCH_INSTANCE, f"no Presentation LUT {uid}")
        return Reply(model.SUCCESS)


# -- helpers ------------------------------------------------------------------------------


def _key(peer: Peer) -> str:
    """Which association a request belongs to (a peer's address where the host gives no id)."""
    return peer.association_id or f"{peer.calling_ae}@{peer.address}:{peer.port}"


def _what(request: Request) -> str:
    """E.g. "N-SET Basic Grayscale Image Box", for logs and comments."""
    sop_class = request.command.sop_class_uid
    return f"{request.command.name} {_CLASS_NAMES.get(sop_class, sop_class)}"


def _comment(text: str) -> str:
    return text[:_COMMENT_MAX]


def _refusal_reply(request: Request, refusal: Refusal) -> Reply:
    fields: dict[str, object] = {"ErrorComment": _comment(refusal.comment)}
    if refusal.tags and request.command.field in _LISTS_TAGS:
        fields["AttributeIdentifierList"] = refusal.tags
    return Reply(refusal.status, fields=fields)


def _log_refusal(request: Request, status: int, comment: str) -> None:
    log.warning(
        "print %s %s from %s answered 0x%04X: %s",
        _what(request),
        request.command.sop_instance_uid or "-",
        request.peer.calling_ae,
        status,
        comment,
    )


def _log_ignored(request: Request, tags: list[int]) -> None:
    if tags:
        names = ", ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in tags)
        log.info("print %s from %s: ignored %s", _what(request), request.peer.calling_ae, names)


def _decode(request: Request) -> Dataset:
    """The request's data set, every element parsed (a data set that cannot be read fails
    here with 0x0110, not halfway through changing the state)."""
    if request.dataset is None:
        return Dataset()
    if getattr(request.dataset, "overflowed", False):
        raise Refusal(model.PROCESSING_FAILURE, "data set too large")
    try:
        ds = decode_dataset(request.dataset.data, request.context.transfer_syntax)
        ds.walk(lambda _ds, _elem: None)
    except Exception as exc:
        raise Refusal(model.PROCESSING_FAILURE, f"data set cannot be parsed: {exc}") from exc
    return ds


def _encode(ds: Dataset, request: Request) -> bytes:
    return encode_dataset(ds, request.context.transfer_syntax)


def _run_check(check: Callable[..., list[str]] | None, *args: object) -> None:
    """Refuse with 0x0106 when a hooked validator finds problems."""
    problems = check(*args) if check is not None else []
    if problems:
        raise Refusal(model.INVALID_VALUE, "; ".join(problems))


def _require_print_action(request: Request) -> None:
    action = request.command.ActionTypeID
    if action != PRINT_ACTION:
        raise Refusal(model.NO_SUCH_ACTION, f"Action Type ID {action}; only 1 (print)")


def _session(state: PrintAssociation, uid: str) -> FilmSessionState:
    if state.session is None or state.session.uid != uid:
        raise Refusal(model.NO_SUCH_INSTANCE, f"no film session {uid}")
    return state.session


def _film_box(state: PrintAssociation, uid: str) -> FilmBoxState:
    box = state.film_box(uid)
    if box is None:
        raise Refusal(model.NO_SUCH_INSTANCE, f"no film box {uid}")
    return box


def _lut_reference(state: PrintAssociation, ds: Dataset, current: str | None) -> str | None:
    """The Presentation LUT shape after a request: the one it references, or ``current``
    when it does not mention a Presentation LUT."""
    if "ReferencedPresentationLUTSequence" not in ds:
        return current
    return model.referenced_lut(state.luts, ds)


def _check_session_reference(ds: Dataset, session: FilmSessionState) -> None:
    """A film box belongs to the film session it names (PS3.4 H.4.2.2.1)."""
    items = ds.ReferencedFilmSessionSequence
    uid = str(items[0].get("ReferencedSOPInstanceUID", "")) if len(items) == 1 else ""
    if uid != session.uid:
        raise Refusal(
            model.INVALID_VALUE,
            f"Referenced Film Session {uid or '?'} is not {session.uid}",
            [tag_of("ReferencedFilmSessionSequence")],
        )


def _film_box_response(box: FilmBoxState) -> Dataset:
    """The N-CREATE response of a film box: its attributes with the defaults filled in,
    and the image boxes made for it in Referenced Image Box Sequence (PS3.4 H.4.2.2.1)."""
    response = copy.deepcopy(box.attributes)
    items = []
    for slot in box.slots:
        item = Dataset()
        item.ReferencedSOPClassUID = _image_box_class(box)
        item.ReferencedSOPInstanceUID = slot.uid
        items.append(item)
    response.ReferencedImageBoxSequence = Sequence(items)
    return response


def _image_box_class(box: FilmBoxState) -> str:
    """The image box SOP class of a film box, fixed by the meta SOP class it came under."""
    return _COLOR_IMAGE_BOX if box.color else _GRAYSCALE_IMAGE_BOX


def _restricted(ds: Dataset, wanted: list[int]) -> Dataset:
    """``ds`` cut down to the tags an N-GET asked for; a Printer attribute we have no
    value for is returned empty, a tag that is not a Printer attribute is left out."""
    result = Dataset()
    for tag in wanted:
        if tag in ds:
            result.add(ds[tag])
            continue
        keyword = next((k for k in model.PRINTER_ATTRIBUTES if tag_of(k) == tag), None)
        if keyword is not None:
            result.add_new(tag, model.known_vr(keyword), None)
    return result
