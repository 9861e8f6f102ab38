"""What each jurisdiction requires of a personalized price: pure rules, no I/O.

A :class:`JurisdictionRules` maps codes (ISO 3166-1 alpha-2 countries, or ISO 3166-2
subdivisions such as ``US-NY``) to a :class:`JurisdictionRule`: whether personal data may
set prices at all, the disclosure shown with every personalized line, and whether the EU
prior-price rule applies to announced reductions. A subdivision without a rule of its own
follows its country's; a code without either gets :data:`NEUTRAL`.

The shipped defaults (:data:`DEFAULT_RULES`) follow the laws in force in 2026:

- ``US-NY``: the Algorithmic Pricing Disclosure Act (General Business Law § 349-a) requires
  the statement "THIS PRICE WAS SET BY AN ALGORITHM USING YOUR PERSONAL DATA" with a price
  set by an algorithm from personal data;
- EU member states: the Consumer Rights Directive (art. 6(1)(ea), added by the Omnibus
  Directive 2019/2161) requires telling the consumer that the price was personalized on
  the basis of automated decision-making, and the Price Indication Directive (art. 6a)
  requires an announced reduction to state the prior price: the lowest price applied in
  the 30 days before it.

These are defaults for merchandisers and counsel to review, not legal advice.

Examples
--------
>>> DEFAULT_RULES.resolve("US-NY").disclosure
'THIS PRICE WAS SET BY AN ALGORITHM USING YOUR PERSONAL DATA'
>>> DEFAULT_RULES.resolve("FR-75").prior_price_rule
True
>>> DEFAULT_RULES.resolve("US-CA") == NEUTRAL
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COUNTRIES",
    "DEFAULT_RULES",
    "EU_DISCLOSURE",
    "EU_MEMBER_STATES",
    "NEUTRAL",
    "NY_DISCLOSURE",
    "JurisdictionRule",
    "JurisdictionRules",
    "known",
]



def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: ISO 3166-1 alpha-2 country codes (officially assigned).
COUNTRIES: frozenset[str] = _codes("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
VN VU WF WS YE YT ZA ZM ZW
""")

EU_MEMBER_STATES: frozenset[str] = _codes(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE"
)
NY_DISCLOSURE = "THIS PRICE WAS SET BY AN ALGORITHM USING YOUR PERSONAL DATA"
EU_DISCLOSURE = (
    "This price was personalised for you on the basis of automated decision-making."
)


def known(code: str) -> bool:
    """Whether ``code`` names a country, or a subdivision of one (``CC`` or ``CC-XXX``)."""
    country, dash, sub = code.partition("-")
    return country in COUNTRIES and (not dash or 1 <= len(sub) <= 3)


@dataclass(frozen=True, slots=True)
class JurisdictionRule:
    """What one jurisdiction requires.

    Attributes
    ----------
    code : str
    personalization : bool
        False: personal data may not set prices; every line gets the non-personalized
        price (the list price, no model-chosen promotion).
    disclosure : str or None
        Shown with every personalized line.
    prior_price_rule : bool
        An announced reduction carries the lowest price of the prior 30 days, and its
        percentage is computed from it.
    """

    code: str
    personalization: bool = True
    disclosure: str | None = None
    prior_price_rule: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (as stored and served)."""
        return {"code": self.code, "personalization": self.personalization,
                "disclosure": self.disclosure, "prior_price_rule": self.prior_price_rule}  # fmt: skip


#: The rule of a jurisdiction nobody configured: personalization allowed, nothing required.
NEUTRAL = JurisdictionRule("*")


@dataclass(frozen=True)
class JurisdictionRules:
    """Rules by code and the jurisdiction of quotes that name none.

    Parameters
    ----------
    rules : mapping of code to JurisdictionRule
    default : str, optional
        Used for a quote without a jurisdiction (None: :data:`NEUTRAL`).
    """

    rules: Mapping[str, JurisdictionRule] = field(default_factory=dict)
    default: str | None = None

    @classmethod
    def from_list(
        cls, rules: Iterable[Mapping[str, Any]], default: str | None = None
    ) -> JurisdictionRules:
        """Build from stored dicts (``code``, ``personalization``, ``disclosure``,
        ``prior_price_rule``)."""
        parsed = {
            str(r["code"]): JurisdictionRule(
                str(r["code"]), bool(r.get("personalization", True)), r.get("disclosure"),
                bool(r.get("prior_price_rule", False)),
            )
            for r in rules
        }  # fmt: skip
        return cls(parsed, default)

    def code_for(self, code: str | None) -> str | None:
        """The jurisdiction a quote is priced under (its own, or the default)."""
        return code if code is not None else self.default

    def resolve(self, code: str | None) -> JurisdictionRule:
        """The rule for ``code``: its own, else its country's, else :data:`NEUTRAL`."""
        if code is None:
            return NEUTRAL
        rule = self.rules.get(code)
        if rule is None and "-" in code:
            rule = self.rules.get(code.partition("-")[0])
        return rule if rule is not None else NEUTRAL

    def to_list(self) -> list[dict[str, Any]]:
        """The rules, sorted by code (JSON-ready)."""
        return [self.rules[c].to_dict() for c in sorted(self.rules)]


DEFAULT_RULES = JurisdictionRules(
    {
        "US-NY": JurisdictionRule("US-NY", disclosure=NY_DISCLOSURE),
        **{
            c: JurisdictionRule(c, disclosure=EU_DISCLOSURE, prior_price_rule=True)
            for c in sorted(EU_MEMBER_STATES)
        },
    },
)
