"""The toy factual-recall world (facts/world.py, facts/task.py) and its tokenized prompt set
(facts/prompts.py): subjects, held-out templates, subject spans through tokenizer offsets."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.tasks.base import make_task
from interp_pipeline.facts.prompts import FactRecord, as_records, tokenize_facts
from interp_pipeline.facts.world import RELATIONS, all_prompts
from tests.support.models import byte_level_bpe, task_model


@pytest.fixture(scope="module")
def task():
    return make_task({"name": "facts", "n_subjects": 40, "seed": 3})


def test_world_has_subjects_of_one_to_three_pieces_and_one_heldout_template_per_fact(task):
    prompts = task.prompts()
    assert Counter(len(p.subject.split()) for p in prompts).keys() == {1, 2, 3}
    assert len({p.subject for p in prompts}) == 40
    held = Counter((p.subject_id, p.relation) for p in prompts if p.heldout)
    assert set(held.values()) == {1} and len(held) == 40 * len(RELATIONS)
    # every template is trained on with some subjects and held out with others
    trained = {(p.relation, p.template) for p in prompts if not p.heldout}
    assert trained == {(p.relation, p.template) for p in prompts}
    # one object per (subject, relation), whatever the template
    objects = {(p.subject_id, p.relation): set() for p in prompts}
    for p in prompts:
        objects[(p.subject_id, p.relation)].add(p.object)
        assert p.text[p.subject_span[0]:p.subject_span[1]] == p.subject
    assert {len(v) for v in objects.values()} == {1}
    assert all_prompts(40, 3) == prompts and all_prompts(40, 4) != prompts


def test_training_batches_never_hold_a_heldout_prompt_and_the_loss_reads_the_object(task):
    heldout = {tuple(row.tolist()) for row in task.encode(task.prompts("heldout"))}
    batch = task.train_batch(torch.Generator().manual_seed(0), 256)
    assert not heldout & {tuple(row.tolist()) for row in batch}
    logits = torch.zeros(len(batch), batch.shape[1], task.model_config()["d_vocab"])
    last = task._object_index(batch)
    logits[torch.arange(len(batch)), last, batch[torch.arange(len(batch)), last + 1]] = 30.0
    assert task.loss(logits, batch) < 1e-6


def test_toy_prompts_tokenize_with_subject_spans_and_ids(task):
    model = task_model(task, n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, act_fn="gelu")
    assert model.to_str_tokens("the home of Ka Lin is") == ["<bos>", "the", "home", "of", "Ka", "Lin", "is"]
    prompts = task.prompts()
    records = [FactRecord(p.text, p.subject, " " + p.object, p.subject_span, p.relation, p.template, p.heldout,
                          p.subject_id) for p in prompts]
    facts = tokenize_facts(model.tokenizer, records, prepend_bos=True, max_len=model.cfg.n_ctx)
    for i, p in enumerate(prompts):
        first, last_subject, last = (int(facts[k][i]) for k in ("subject_first", "subject_last", "last"))
        tokens = model.tokenizer.convert_ids_to_tokens(facts["tokens"][i, :int(facts["length"][i])].tolist())
        assert tokens[first:last_subject + 1] == p.subject.split()
        assert " ".join(tokens[1:last + 1]) == p.text
        assert model.tokenizer.convert_ids_to_tokens(int(facts["object"][i])) == p.object
        assert (int(facts["relation"][i]), int(facts["template"][i]), int(facts["split"][i]),
                int(facts["subject_id"][i])) == (p.relation, p.template, int(p.heldout), p.subject_id)
    # the training sequences the model saw are these tokens followed by the object
    encoded = task.encode(prompts)
    rows = torch.arange(len(prompts))
    assert torch.equal(encoded[rows, facts["last"] + 1], facts["object"])


def test_listed_prompts_are_placed_through_byte_level_offsets():
    texts = ["The Space Needle is in downtown Seattle", "Megan Rapinoe plays the sport of soccer"] * 50
    tokenizer = byte_level_bpe(texts, vocab_size=500)
    records = as_records([
        {"prompt": "The Space Needle is in downtown", "subject": "The Space Needle", "object": " Seattle"},
        {"prompt": "Megan Rapinoe plays the sport of", "subject": "Rapinoe", "object": " soccer"},
    ])
    facts = tokenize_facts(tokenizer, records, prepend_bos=True)
    for i, subject in enumerate(["The Space Needle", "Rapinoe"]):
        ids = facts["tokens"][i, int(facts["subject_first"][i]):int(facts["subject_last"][i]) + 1].tolist()
        assert tokenizer.decode(ids).strip() == subject
    assert tokenizer.decode([int(facts["object"][0])]) == " Seattle"
    assert facts["subject_id"].tolist() == [0, 1] and facts["split"].tolist() == [0, 0]


@pytest.mark.parametrize(("record", "message"), [
    ({"prompt": "Megan Rapinoe plays the sport of", "subject": "Rapinoe Megan", "object": " soccer"},
     "prompts[0].subject: 'Rapinoe Megan' does not occur in the prompt"),
    ({"prompt": "Megan Rapinoe plays the sport of", "subject": "Megan", "object": " soccer ball"},
     "prompts[0].object: expected a single token, found"),
    ({"prompt": "Megan Rapinoe plays the sport of", "subject": "sport of", "object": " soccer"},
     "prompts[0].subject: expected the prompt to go on after the subject"),
])
def test_a_prompt_that_does_not_fit_names_its_key(record, message):
    tokenizer = byte_level_bpe(["Megan Rapinoe plays the sport of soccer"] * 20, vocab_size=300)
    with pytest.raises(ConfigError) as error:
        tokenize_facts(tokenizer, as_records([record]), prepend_bos=True)
    assert str(error.value).startswith(message), str(error.value)
