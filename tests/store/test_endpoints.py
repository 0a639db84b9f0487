"""Endpoints in Redis (``store.endpoints``): validation of kinds and URLs, and the compare-and-set writes
of the ``endpoint_write`` script."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from dispatcher import Dispatcher, InvalidInput, InvalidURL

if TYPE_CHECKING:
    from tests.conftest import Receiver


def test_a_poll_endpoint_has_no_url_and_every_other_kind_needs_one(dsp: Dispatcher, receiver: Receiver) -> None:
    ep = dsp.subscribe_poll(["order.*"])
    assert (ep.kind, ep.url, ep.event_types, ep.pollable) == ("poll", "", ["order.*"], True)
    assert dsp.subscribe(None, ["a.b"], kind="poll").kind == "poll"
    with pytest.raises(InvalidURL, match="needs a URL"):
        dsp.subscribe(None, ["*"])
    with pytest.raises(InvalidInput, match="no URL"):
        dsp.subscribe(receiver.url, ["*"], kind="poll")
    with pytest.raises(InvalidInput, match="no URL"):
        dsp.update_endpoint(ep.id, url=receiver.url)
    with pytest.raises(InvalidInput, match="kind must be"):
        dsp.subscribe(receiver.url, ["*"], kind="carrier-pigeon")
    with pytest.raises(InvalidInput, match="also_poll"):
        dsp.subscribe(receiver.url, ["*"], also_poll="yes")
    webhook = dsp.subscribe(receiver.url, ["*"])
    assert not webhook.pollable and dsp.update_endpoint(webhook.id, also_poll=True).pollable
