"""The per-channel decision: may this identity subscribe, publish, see presence?

The rules come from ``[[channel]]`` (first match wins, else
``[channel_defaults]``); see :class:`orbiter.config.settings.ChannelRule`:

- ``subscribe = "anyone"``: every connection (authenticated, when auth is on);
- ``subscribe = "token"``: the connection's token (or connect hook) lists the
  channel in its ``channels`` claim (glob patterns allowed);
- ``subscribe = "private"``: the ``subscribe`` command carries a
  subscription token for this channel and this user (:mod:`.tokens`);
- ``subscribe = "hook"``: the app's subscribe hook decides.

Publishing by clients needs ``client_publish = true``; on channels that are
not ``anyone``'s, only a current subscriber may publish; with
``publish_hook = true`` the app's publish hook may deny or replace the payload.
Channels starting with ``$`` are the server's and are refused by the session.
"""

from __future__ import annotations

from collections.abc import Mapping

from orbiter.auth.hooks import AppHooks, HookDenied
from orbiter.auth.identity import AuthError, Failure, Identity
from orbiter.auth.tokens import InvalidToken, TokenVerifier
from orbiter.config.settings import Config
from orbiter.model import JSON


class Permissions:
    def __init__(
        self, config: Config, verifier: TokenVerifier | None, hooks: AppHooks | None
    ) -> None:
        self._config = config
        self._verifier = verifier
        self._hooks = hooks

    async def check_subscribe(
        self,
        identity: Identity,
        channel: str,
        *,
        client: str,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Return if ``identity`` may subscribe to ``channel``; else raise :class:`AuthError`."""
        mode = self._config.rule_for(channel).subscribe
        if mode == "anyone":
            return
        if mode == "token":
            if not identity.lists_channel(channel):
                raise AuthError(
                    Failure.FORBIDDEN,
                    f"channel {channel!r} needs a connection token whose 'channels' claim lists it",
                )
            return
        if mode == "private":
            if token is None:
                raise AuthError(
                    Failure.FORBIDDEN,
                    f"channel {channel!r} is private: subscribe with a subscription token "
                    "('token')",
                )
            if self._verifier is None:  # config validation forbids this
                raise AuthError(Failure.FORBIDDEN, "private channels need auth configured")
            try:
                self._verifier.subscription(token, channel=channel, user=identity.user)
            except InvalidToken as exc:
                failure = Failure.EXPIRED if exc.expired else Failure.FORBIDDEN
                raise AuthError(failure, exc.message) from None
            return
        if self._hooks is None:  # mode "hook"; config validation requires the hook
            raise AuthError(Failure.FORBIDDEN, "no subscribe hook configured")
        try:
            await self._hooks.subscribe(client, identity.user, channel, headers or {})
        except HookDenied as exc:
            raise AuthError(Failure.FORBIDDEN, exc.message) from None

    async def check_publish(
        self,
        identity: Identity,
        channel: str,
        data: JSON,
        *,
        client: str,
        subscribed: bool,
        headers: Mapping[str, str] | None = None,
    ) -> JSON:
        """The payload to publish (perhaps rewritten by the hook); else :class:`AuthError`."""
        if self.check_publish_now(channel, subscribed=subscribed):
            return await self.publish_hook(identity, channel, data, client=client, headers=headers)
        return data

    def check_publish_now(self, channel: str, *, subscribed: bool) -> bool:
        """The rules of :meth:`check_publish` that need no await: :class:`AuthError` if
        one refuses; True if the publish hook must still decide (await
        :meth:`publish_hook`), False if the payload may be published as it is."""
        rule = self._config.rule_for(channel)
        if not rule.client_publish:
            raise AuthError(
                Failure.FORBIDDEN,
                f"clients may not publish to channel {channel!r}: "
                "no [[channel]] rule with client_publish = true matches it",
            )
        if rule.subscribe != "anyone" and not subscribed:
            raise AuthError(
                Failure.FORBIDDEN,
                f"only subscribers may publish to channel {channel!r}: subscribe first",
            )
        return rule.publish_hook

    async def publish_hook(
        self,
        identity: Identity,
        channel: str,
        data: JSON,
        *,
        client: str,
        headers: Mapping[str, str] | None = None,
    ) -> JSON:
        """The app's publish hook's word, once :meth:`check_publish_now` said it must be
        asked: the payload to publish (perhaps replaced); else :class:`AuthError`."""
        if self._hooks is None:
            raise AuthError(Failure.FORBIDDEN, "no publish hook configured")
        try:
            answer = await self._hooks.publish(client, identity.user, channel, data, headers or {})
        except HookDenied as exc:
            raise AuthError(Failure.FORBIDDEN, exc.message) from None
        if answer.has("data"):
            return answer.get("data")
        return data

    def check_presence(self, channel: str) -> None:
        if not self._config.rule_for(channel).presence:
            raise AuthError(
                Failure.FORBIDDEN,
                f"presence is off for channel {channel!r} (see [[channel]] presence)",
            )
