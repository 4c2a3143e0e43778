"""Connection and subscription tokens: what is accepted, what is refused and why."""

from __future__ import annotations

import base64
import time

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from orbiter.auth.tokens import InvalidToken, TokenVerifier
from orbiter.config.settings import AuthSettings
from orbiter.protocol.keys import ConnectionKey
from tests.support.keys import SECRET, ec_key, public_pem, rsa_key, token

HS = TokenVerifier(AuthSettings(secret=SECRET))


def test_a_valid_token_gives_user_expiry_info_channels_and_keys() -> None:
    t = token(info={"color": "red"}, channels=["news:*"], keys=["alice,0,/chat"])
    claims = HS.connection(t)
    assert claims.user == "alice"
    assert claims.expires is not None
    assert claims.expires > time.time()
    assert claims.info == {"color": "red"}
    assert claims.channels == ("news:*",)
    assert claims.keys == (ConnectionKey("alice", "0", "/chat"),)


def test_expired_token_is_refused_as_expired() -> None:
    with pytest.raises(InvalidToken) as err:
        HS.connection(token(ttl=-5))
    assert err.value.expired
    assert "expired" in err.value.message


def test_leeway_tolerates_clock_skew() -> None:
    lenient = TokenVerifier(AuthSettings(secret=SECRET, leeway=30))
    assert lenient.connection(token(ttl=-5)).user == "alice"


def test_wrong_signature_is_refused() -> None:
    with pytest.raises(InvalidToken) as err:
        HS.connection(token(key="another-secret-of-enough-length-123456"))
    assert not err.value.expired
    assert "signature" in err.value.message


def test_forged_unsigned_token_is_refused() -> None:
    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    forged = b64({"alg": "none", "typ": "JWT"}) + "." + b64({"sub": "admin"}) + "."
    with pytest.raises(InvalidToken):
        HS.connection(forged)


def test_tampered_payload_is_refused() -> None:
    header, _, signature = token().split(".")
    payload = base64.urlsafe_b64encode(b'{"sub":"mallory"}').rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        HS.connection(f"{header}.{payload}.{signature}")


@pytest.mark.parametrize(
    ("make", "algorithm"), [(rsa_key, "RS256"), (ec_key, "ES256")], ids=["rsa", "ec"]
)
def test_public_key_tokens(make, algorithm) -> None:
    key = make()
    verifier = TokenVerifier(AuthSettings(public_key=public_pem(key)))
    assert verifier.connection(token(key=key, algorithm=algorithm)).user == "alice"
    with pytest.raises(InvalidToken):
        verifier.connection(token(key=SECRET))  # HS256 where a public key is configured


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # signing it
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_another_hmac_algorithm_with_the_configured_secret_is_refused(algorithm: str) -> None:
    """Only HS256 is accepted with ``auth.secret``, not the rest of its family."""
    with pytest.raises(InvalidToken) as err:
        HS.connection(token(algorithm=algorithm))
    assert err.value.message == "the connection token is not signed with HS256"
    with pytest.raises(InvalidToken) as err:
        HS.subscription(token(algorithm=algorithm, channel="c"), channel="c", user="alice")
    assert err.value.message == "the subscription token is not signed with HS256"


@pytest.mark.parametrize("algorithm", ["RS384", "RS512", "PS256", "PS384", "PS512"])
def test_another_rsa_algorithm_with_the_configured_key_is_refused(algorithm: str) -> None:
    """Only RS256 is accepted with an RSA ``auth.public_key``: a token the same key
    signed under another RSA algorithm is refused, and the message says why."""
    key = rsa_key()
    verifier = TokenVerifier(AuthSettings(public_key=public_pem(key)))
    with pytest.raises(InvalidToken) as err:
        verifier.connection(token(key=key, algorithm=algorithm))
    assert err.value.message == "the connection token is not signed with RS256"


@pytest.mark.parametrize("algorithm", ["ES384", "ES512"])
def test_another_ec_algorithm_with_the_configured_key_is_refused(algorithm: str) -> None:
    key = ec_key()
    verifier = TokenVerifier(AuthSettings(public_key=public_pem(key)))
    with pytest.raises(InvalidToken) as err:
        verifier.connection(_ec_signed(key, algorithm))
    assert err.value.message == "the connection token is not signed with ES256"


def _ec_signed(key: ec.EllipticCurvePrivateKey, algorithm: str) -> str:
    """A token the P-256 key signs under ``algorithm`` (PyJWT refuses to make one)."""
    digest = {"ES384": hashes.SHA384(), "ES512": hashes.SHA512()}[algorithm]

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = orjson.dumps({"alg": algorithm, "typ": "JWT"})
    claims = orjson.dumps({"sub": "admin", "exp": int(time.time()) + 60})
    signing = b64(header) + "." + b64(claims)
    r, s = decode_dss_signature(key.sign(signing.encode(), ec.ECDSA(digest)))
    return signing + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def test_hmac_with_the_public_key_as_secret_is_refused() -> None:
    """The algorithm-confusion attack: sign HS256 with the (public) PEM as the secret."""
    pem = public_pem(rsa_key())
    verifier = TokenVerifier(AuthSettings(public_key=pem))
    forged = _hs256_with(pem.encode())  # PyJWT itself refuses to make this token
    with pytest.raises(InvalidToken):
        verifier.connection(forged)


def _hs256_with(secret: bytes) -> str:
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(b'{"sub":"admin"}')
    mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(mac)


def test_audience_and_issuer_are_checked_when_configured() -> None:
    verifier = TokenVerifier(AuthSettings(secret=SECRET, audience="orbiter", issuer="app"))
    assert verifier.connection(token(aud="orbiter", iss="app")).user == "alice"
    for bad in (token(aud="other", iss="app"), token(aud="orbiter"), token()):
        with pytest.raises(InvalidToken):
            verifier.connection(bad)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": ""},
        {"sub": 7},
        {"sub": None},
        {"channels": "news"},
        {"channels": [1]},
        {"keys": ["not a key"]},
        {"keys": "alice, 0, /chat"},
        {"channel": "private:x"},  # a subscription token
    ],
)
def test_malformed_claims_are_refused_with_a_message(claims) -> None:
    sub = claims.pop("sub", "alice")
    with pytest.raises(InvalidToken) as err:
        HS.connection(token(sub, **claims) if sub is not None else token(None, **claims))
    assert err.value.message


def test_subscription_token_is_for_one_channel_and_one_user() -> None:
    t = token("alice", channel="private:alice")
    assert HS.subscription(t, channel="private:alice", user="alice") is not None
    for channel, user in (("private:bob", "alice"), ("private:alice", "bob")):
        with pytest.raises(InvalidToken):
            HS.subscription(t, channel=channel, user=user)
    with pytest.raises(InvalidToken):  # a connection token is no subscription token
        HS.subscription(token("alice"), channel="private:alice", user="alice")
    with pytest.raises(InvalidToken) as err:
        HS.subscription(token("alice", ttl=-1, channel="p"), channel="p", user="alice")
    assert err.value.expired


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=100), st.none(), st.integers()))
def test_any_input_is_a_clear_refusal_never_a_crash(raw) -> None:
    with pytest.raises(InvalidToken):
        HS.connection(raw)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["sub", "exp", "nbf", "iat", "info", "channels", "keys", "channel", "aud"]),
        _json,
        max_size=6,
    )
)
def test_any_signed_claims_parse_or_are_refused_clearly(claims) -> None:
    signed = jwt.encode(claims, SECRET, algorithm="HS256")
    try:
        result = HS.connection(signed)
    except InvalidToken as exc:
        message = exc.message
        assert message
        return
    assert isinstance(result.user, str)
    assert result.user
    assert result.channels is None or all(isinstance(c, str) for c in result.channels)
