

def test_last_step_keeps_the_final_inference_only():
    from critique.flaws import last_step
    from microtheory.trees import EntailmentTree, Step

    t = EntailmentTree("t", "q", "a dog is warm-blooded",
                       {"sent1": "a dog is a mammal", "sent2": "mammals are warm-blooded", "int1": "x", "sent3": "y"},
                       (Step(("sent3",), "int1"), Step(("sent1", "int1", "sent2"), "hypothesis")))
    s = last_step(t)
    assert s.leaves == ("sent1", "sent_int1", "sent2") and s.intermediates == ()
    assert s.step_texts() == [(["a dog is a mammal", "x", "mammals are warm-blooded"], "a dog is warm-blooded")]
    one = EntailmentTree("u", "q", "h", {"sent1": "a"}, (Step(("sent1",), "hypothesis"),))
    assert last_step(one) is one
