"""Certificate path checks: validity, key usage, chain to the trust anchors, MOICA attributes."""

from __future__ import annotations

import datetime

import pytest
from conftest import Pki

from server.card.moica import holder_name, id_suffix
from server.card.path import PathError, TrustAnchors, check_certificate
from server.testpki import TestPki

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


def anchors(test_pki: Pki) -> TrustAnchors:
    return TrustAnchors((test_pki.pki.root,), (test_pki.pki.ca,))


def test_good_certificate_chains_to_root(test_pki: Pki) -> None:
    holder = test_pki.issue()

    chain = check_certificate(holder.certificate, anchors(test_pki), NOW)

    assert chain == [holder.certificate, test_pki.pki.ca, test_pki.pki.root]


def test_expired_certificate_rejected(test_pki: Pki) -> None:
    holder = test_pki.issue(not_before=NOW - 10 * DAY, not_after=NOW - DAY)

    with pytest.raises(PathError) as caught:
        check_certificate(holder.certificate, anchors(test_pki), NOW)

    assert caught.value.reason == "expired"


def test_not_yet_valid_certificate_rejected(test_pki: Pki) -> None:
    holder = test_pki.issue(not_before=NOW + DAY, not_after=NOW + 10 * DAY)

    with pytest.raises(PathError) as caught:
        check_certificate(holder.certificate, anchors(test_pki), NOW)

    assert caught.value.reason == "not_yet_valid"


def test_encipherment_only_key_usage_rejected(test_pki: Pki) -> None:
    holder = test_pki.issue(digital_signature=False)

    with pytest.raises(PathError) as caught:
        check_certificate(holder.certificate, anchors(test_pki), NOW)

    assert caught.value.reason == "key_usage"


def test_unknown_issuer_rejected(test_pki: Pki) -> None:
    stranger = TestPki.create(test_pki.pki.responder_url).issue(
        "王小明", "A123456789", key=test_pki.key
    )

    with pytest.raises(PathError) as caught:
        check_certificate(stranger.certificate, anchors(test_pki), NOW)

    assert caught.value.reason == "untrusted_issuer"


def test_missing_intermediate_rejected(test_pki: Pki) -> None:
    holder = test_pki.issue()

    with pytest.raises(PathError) as caught:
        check_certificate(holder.certificate, TrustAnchors((test_pki.pki.root,)), NOW)

    assert caught.value.reason == "untrusted_issuer"


def test_moica_attributes_read(test_pki: Pki) -> None:
    holder = test_pki.issue("林美玲", "B223456782")

    assert holder_name(holder.certificate) == "林美玲"
    assert id_suffix(holder.certificate) == "6782"
    assert id_suffix(test_pki.issue(id_number=None).certificate) is None
