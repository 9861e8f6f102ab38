from pricing.policy import LineContext, ListPricePolicy


def test_list_price_policy_serves_list_price_with_certainty():
    line = LineContext("loyalty", "TEA-1", "tea", "USD", 1299, 700, quantity=3)
    decision = ListPricePolicy().decide(line)
    assert decision.price_minor == 1299
    assert decision.propensity == 1.0
    assert decision.personalized is False
    assert decision.reasons == ("list_price",)
    assert decision.fallback is False
