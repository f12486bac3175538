"""`tla pretrain`: the corpus keeps the evaluation shapes and clearances out, its answers are the simulator's
and the geometry's, the exported folder is a stock checkpoint that plain transformers loads in a fresh
process, and the paper's recipe on it (LoRA, frozen vision) trains only the adapters."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tla.data.text import decode_action, encode_contact
from tla.pretrain.corpus import (
    EVALUATION_CLEARANCES,
    KINDS,
    CorpusConfig,
    corpus_texts,
    describe_size,
    load_corpus,
)
from tla.pretrain.model import BASE_INPUT, chance, check_base, correct, score
from tla.sim import geometry as geo

EVALUATION_SHAPES = ("square", "triangle", "round", "hexagon", "pentagon")


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(CorpusConfig(attempts=15, heldout_attempts=5), "train", None, progress=False)


def test_corpus_never_contains_an_evaluation_shape_or_clearance(corpus):
    items = [corpus.question(i) for i in range(len(corpus))]
    assert {it["shape"] for it in items} == set(geo.PRETRAIN_SHAPES)  # 15 attempts cycle through all five
    assert not {it["shape"] for it in items} & set(EVALUATION_SHAPES)
    assert not {round(it["clearance"], 6) for it in items} & set(EVALUATION_CLEARANCES)
    text = " ".join(it["question"] + " " + it["answer"] for it in items) + " ".join(corpus_texts(corpus.cfg))
    for shape in EVALUATION_SHAPES:
        assert shape not in text
    assert {it["kind"] for it in items} == set(KINDS)


def test_corpus_config_refuses_evaluation_shapes_and_clearances():
    with pytest.raises(ValueError, match="only shapes no evaluation uses"):
        CorpusConfig(shapes=("rectangle", "hexagon")).validate()
    with pytest.raises(ValueError, match="avoid the evaluation clearances"):
        CorpusConfig(clearances=(2.4, 1.0)).validate()
    with pytest.raises(ValueError, match="stored fields"):
        CorpusConfig(modality="rgb").validate()


def test_answers_are_the_simulators_and_the_geometrys(corpus):
    from tla.sim.contact import contact_facts

    sim = corpus.sim_cfg
    for i in range(len(corpus)):
        it = corpus.question(i)
        if it["kind"] == "caption":
            assert it["answer"] == encode_contact(contact_facts(it["shape"], it["clearance"], it["error"]))
        elif it["kind"] == "insert":
            move = decode_action(it["question"])  # the move is written like an action answer
            goes_in = geo.inserts(it["shape"], it["clearance"], it["error"] + move, sim.geometry.peg_size,
                                  sim.geometry.insert_area_tol, sim.geometry.circle_segments)
            assert it["answer"] == ("yes" if goes_in else "no")
        elif it["kind"] == "error":
            got = [float(t.split()[0]) for t in it["answer"].replace("x ", "").replace("y ", "")
                   .replace("rz ", "").split(", ")]
            np.testing.assert_allclose(got, it["error"], atol=0.051)
    # every attempt collides (a failed attempt is what the sensors feel)
    for a in range(corpus.attempts):
        it = corpus.question(a * len(KINDS))
        assert geo.collides(it["shape"], it["clearance"], it["error"], sim.geometry)


def test_the_recorded_corpus_rebuilds_the_same_config():
    """The checkpoint's tla_pretrain.json records `describe(cfg)`; the held-out check rebuilds the corpus
    from it, so a run on a subset of the question kinds is checked on that subset."""
    from tla.config import from_dict
    from tla.pretrain.corpus import describe

    cfg = CorpusConfig(kinds=("rim", "caption"), attempts=7)
    recorded = json.loads(json.dumps(describe(cfg)))
    assert from_dict(CorpusConfig, {k: v for k, v in recorded.items() if k in CorpusConfig.__dataclass_fields__}) == cfg
    assert set(recorded["questions"]) == {"rim", "caption"}


def test_size_words_follow_the_clearance():
    assert describe_size([0.4, -0.6, 0.5], 1.0) == "x centred, y slightly -, rz centred"
    assert describe_size([1.6, 0.9, -3.5], 2.4) == "x far +, y centred, rz far -"


def test_corpus_is_a_pure_function_of_its_config(tmp_path, corpus):
    cfg = CorpusConfig(attempts=15, heldout_attempts=5)
    cached = load_corpus(cfg, "train", tmp_path, progress=False)  # simulated, then cached
    again = load_corpus(cfg, "train", tmp_path, progress=False)  # read from the cache
    for i in (0, 17, 50, len(corpus) - 1):
        a, b, c = corpus[i], cached[i], again[i]
        assert a["question"] == b["question"] == c["question"] and a["answer"] == b["answer"] == c["answer"]
        assert np.array_equal(a["frames"], b["frames"]) and np.array_equal(b["frames"], c["frames"])
    heldout = load_corpus(cfg, "heldout", None, progress=False)
    assert not np.array_equal(heldout.arrays["error"], corpus.arrays["error"][:5])  # other seeds


def test_scoring_on_hand_made_answers():
    items = [{"kind": "pad", "answer": "the left pad"}, {"kind": "pad", "answer": "the left pad"},
             {"kind": "pad", "answer": "the right pad"},
             {"kind": "error", "answer": "x +1.0 mm, y -0.5 mm, rz +2.0 deg"}]
    answers = ["the left pad", "the right pad", "the right pad", "x +0.3 mm, y +0.5 mm, rz +1.0 deg"]
    s = score(items, answers)
    assert s["kinds"]["pad"]["accuracy"] == pytest.approx(2 / 3)
    assert s["kinds"]["pad"]["chance"] == pytest.approx(2 / 3)
    assert s["kinds"]["error"]["accuracy"] == pytest.approx(2 / 3)  # x and rz signs right, y wrong
    assert correct("error", "x +1.0 mm, y -0.5 mm, rz +2.0 deg", "garbage") == 0.0
    assert chance("insert", ["yes", "no", "no", "no"]) == 0.75


def test_collapse_guard_fires_when_the_answer_follows_the_wording_not_the_touch():
    rims = ["the +x rim", "the -y rim", "the +x+y rim", "the -x rim"] * 6
    pads = ["the left pad", "the right pad"] * 12
    wordings = ["Where does the peg touch the rim?", "Name the part of the rim in contact."] * 12
    items = ([{"kind": "rim", "answer": r, "question": q} for r, q in zip(rims, wordings)]
             + [{"kind": "pad", "answer": p, "question": "Which gel pad presses harder?"} for p in pads])
    # one answer per wording (what the first pretraining run did: 13 distinct answers for 2100 questions)
    by_wording = [("the +x rim" if q.startswith("Where") else "the -y rim") for q in wordings] + ["the left pad"] * 24
    constant = score(items, by_wording)
    assert constant["collapsed"] and constant["collapsed_kinds"] == ["rim", "pad"]
    assert constant["kinds"]["rim"]["distinct_answers"] == 2  # two answers, yet nothing read
    reads = score(items, rims[:22] + ["the +x rim"] * 2 + pads)  # right, but for two samples
    assert not reads["collapsed"] and reads["collapsed_kinds"] == []
    # a constant answer to a question whose right answer is constant is not a collapse
    same = [{"kind": "twist", "answer": "clockwise", "question": "q"}] * 10
    assert not score(same, ["clockwise"] * 10)["collapsed"]
    # the insert question's move is masked: its wordings group, and insert alone never makes `collapsed`
    ins = [{"kind": "insert", "answer": a, "question": f"Would the move [{i}, 0, 0] insert the peg?"}
           for i, a in enumerate(["yes", "no"] * 5)]
    only_insert = score(ins, ["no"] * 10)
    assert only_insert["collapsed_kinds"] == ["insert"] and not only_insert["collapsed"]


def test_answer_weighted_loss_is_the_mean_of_each_answers_own_loss(tmp_path):
    """loss="answer": a batch's loss is the mean of its answers' losses, whatever their lengths; for one
    answer it is the model's own (token-mean) loss."""
    import torch

    from tla.pretrain.run import new_policy, pretrain_config

    cfg = pretrain_config("smoke")
    policy = new_policy(cfg)
    assert policy.loss_weighting == "answer"
    data = load_corpus(cfg.corpus, "train", tmp_path, progress=False)
    short, long = data[KINDS.index("pad")], data[KINDS.index("error")]  # 'the left pad' / 'x +1.4 mm, ...'
    with torch.no_grad():
        own = [float(policy.model(**policy.collate([it]), use_cache=False).loss) for it in (short, long)]
        mixed = float(policy.loss(policy.model, policy.collate([short, long]))[0])
        policy.loss_weighting = "token"
        by_token = float(policy.loss(policy.model, policy.collate([short, long]))[0])
    assert float(policy.loss(policy.model, policy.collate([short]))[0]) == pytest.approx(own[0], rel=1e-5)
    assert mixed == pytest.approx(np.mean(own), rel=1e-4)
    assert abs(by_token - np.mean(own)) > 1e-3  # the token mean leans to the long answer
    with pytest.raises(ValueError, match="loss must be 'answer' or 'token'"):
        pretrain_config("smoke", ["loss=sample"])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from tla.pretrain.run import pretrain, pretrain_config

    out = tmp_path_factory.mktemp("pretrain") / "out"
    check = pretrain(pretrain_config("smoke"), out, progress=False)
    return out, check


@pytest.mark.slow
def test_smoke_pretrain_exports_a_stock_checkpoint_checked_in_a_fresh_process(smoke_run):
    out, check = smoke_run
    model = out / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json",
                 "chat_template.jinja", "tla_pretrain.json", "README.md"):
        assert (model / name).exists(), name
    assert (out / "run" / "train_curves.png").exists() and (out / "heldout.png").exists()
    card = (model / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: transformers" in card and "rectangle" in card
    assert check["samples"] == 2 * len(KINDS) and set(check["kinds"]) == set(KINDS)
    # the folder alone, plain transformers, a new interpreter: it loads and generates
    code = ("import sys; from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration as M; "
            "m = M.from_pretrained(sys.argv[1]); t = AutoTokenizer.from_pretrained(sys.argv[1]); "
            "print(type(m).__name__, len(t), m.config.vision_config.depth)")
    done = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True, check=True)
    assert done.stdout.split()[0] == "Qwen2VLForConditionalGeneration"
    # the input is the labelled-frames layout, said in the card, and the fine-tuning rows accept the base
    assert "left t0:<|vision_start|><|image_pad|> x N<|vision_end|> ... right t3:" in card
    assert check_base(model) == {**json.loads((model / "tla_pretrain.json").read_text())["input"], **BASE_INPUT}


def test_check_base_refuses_a_base_pretrained_on_another_input(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tla_pretrain.json").write_text(json.dumps({"input": {**BASE_INPUT, "layout": "composite"}}))
    with pytest.raises(ValueError, match="layout 'composite' \\(needed 'frames'\\)"):
        check_base(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a `tla pretrain` model folder"):
        check_base(tmp_path / "nowhere")


@pytest.mark.slow
def test_rerun_resumes_and_another_config_is_refused(smoke_run):
    from tla.pretrain.run import pretrain, pretrain_config

    out, check = smoke_run
    before = (out / "model" / "model.safetensors").read_bytes()
    again = pretrain(pretrain_config("smoke"), out, progress=False)  # everything done: nothing retrains
    assert again["kinds"] == check["kinds"]
    assert (out / "model" / "model.safetensors").read_bytes() == before
    with pytest.raises(ValueError, match=r"another configuration \(train.max_steps: 4 -> 5"):
        pretrain(pretrain_config("smoke", ["train.max_steps=5"]), out, progress=False)


@pytest.mark.slow
def test_paper_recipe_on_the_pretrained_base_trains_only_the_adapters(smoke_run, tmp_path):
    """model.path = the exported folder, LoRA: after training, the vision tower and merger are unchanged
    byte for byte, and so is every base weight of the language model; only lora_ weights moved."""
    import torch

    from tla.policies.tla.policy import TLAPolicy
    from tla.pretrain.corpus import load_corpus
    from tla.pretrain.run import load_config
    from tla.train.config import train_preset
    from tla.train.trainer import train

    out, _ = smoke_run
    info = json.loads((out / "model" / "tla_pretrain.json").read_text())["input"]
    policy = TLAPolicy.build("tiny", ["model.preset=pretrained", f"model.path={out / 'model'}",
                                      "model.train_mode=lora", "model.position_table=false",
                                      f"layout={info['layout']}", f"frame_size={info['frame_size']}",
                                      f"modality={info['modality']}"])
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    data = load_corpus(load_config(out).corpus, "train", out / "corpus", progress=False)
    items = [data[i] for i in range(len(data))]
    cfg = train_preset("tiny", ["max_steps=3", "batch_size=4", "val_every=0", "num_workers=0", "report_to=none",
                                "lr=5e-2"])
    train(policy, items, cfg, tmp_path / "run")
    moved = [n for n, p in policy.model.named_parameters() if not torch.equal(p, before[n])]
    assert moved and all("lora_" in n for n in moved)
    vision = [n for n in before if ".visual." in n]
    assert any(".merger." in n for n in vision)
    assert vision and all(torch.equal(dict(policy.model.named_parameters())[n], before[n]) for n in vision)
