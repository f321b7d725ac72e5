"""Contact-policy rules: matching, rolling windows, and the state a decision may assume."""

from __future__ import annotations

from ensayo.catalog.model import ContactPolicy
from ensayo.decisioning.contacts import (
    Contact,
    ContactState,
    capping_policy,
    count_contacts,
    derive_state,
    member,
    parse_member,
    policy_matches,
    relevant_policies,
)

DAY = 86_400.0
POLICIES = (
    ContactPolicy("all", max_contacts=3, window_s=7 * DAY),
    ContactPolicy("email", channel="email", max_contacts=2, window_s=DAY),
    ContactPolicy("promo", action_key="promo", max_contacts=1, window_s=30 * DAY),
)


class TestMatching:
    def test_empty_channel_or_action_matches_everything(self) -> None:
        """A policy's empty channel or action key is a wildcard."""
        assert policy_matches(POLICIES[0], "sms", "x")
        assert policy_matches(POLICIES[1], "email", "x")
        assert not policy_matches(POLICIES[1], "sms", "x")
        assert policy_matches(POLICIES[2], "push", "promo")
        assert not policy_matches(POLICIES[2], "push", "other")

    def test_relevant_policies_of_a_channel(self) -> None:
        """Only policies a channel's actions can count against are relevant."""
        assert relevant_policies(POLICIES, "sms", ["a"]) == POLICIES[:1]
        assert relevant_policies(POLICIES, "email", ["a", "promo"]) == POLICIES

    def test_members_round_trip(self) -> None:
        """A stored contact keeps its channel and action key."""
        assert parse_member(member("d1", "email", "promo")) == ("email", "promo")


class TestWindows:
    def test_rolling_windows_count_only_recent_contacts(self) -> None:
        """Each policy counts its contacts newer than now - window_s."""
        now = 100 * DAY
        contacts = [
            Contact(now - 2 * DAY, "email", "promo"),
            Contact(now - 0.5 * DAY, "email", "a"),
            Contact(now - 0.1 * DAY, "sms", "b"),
            Contact(now - DAY, "email", "c"),  # exactly one window old: out of "email"
        ]
        assert count_contacts(POLICIES, contacts, now) == [4, 1, 1]

    def test_future_stamped_contacts_count(self) -> None:
        """A contact stamped ahead of this replica's clock still counts (clock skew)."""
        assert count_contacts(POLICIES, [Contact(10.5, "email", "a")], 10.0) == [1, 1, 0]

    def test_state_from_counts(self) -> None:
        """Action caps mark actions; channel-wide caps limit the slots left."""
        state = derive_state(POLICIES, [2, 1, 1], ["promo"], 3)
        assert state == ContactState((True,), 1)
        assert derive_state(POLICIES, [0, 0, 0], ["promo"], 3) == ContactState((False,), 2)
        assert derive_state(POLICIES, [3, 0, 0], ["promo"], 3).slots == 0
        assert capping_policy(POLICIES, [3, 0, 0], "a") == "all"
        assert capping_policy(POLICIES, [0, 0, 1], "promo") == "promo"
        assert capping_policy(POLICIES, [0, 0, 1], "a") == ""
