import json

import pytest
import torch

from backline.engines.core.errors import WeightsError
from backline.engines.core.training import Checkpointer, Distributed
from backline.engines.core.weights import load_weights, save_weights


def _build(config):
    return torch.nn.Sequential(torch.nn.Linear(config["d"], config["d"]), torch.nn.Linear(config["d"], 1))


def test_weights_round_trip_and_config_checks(tmp_path):
    model = _build({"d": 4})
    path = save_weights(model, tmp_path / "m", kind="toy", config={"d": 4}, training={"steps": 3})
    loaded, meta = load_weights(path, kind="toy", build=_build)
    assert meta["training"]["steps"] == 3
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(WeightsError, match="not 'other'"):
        load_weights(path, kind="other", build=_build)
    with pytest.raises(WeightsError, match="wrong shape"):
        load_weights(path, kind="toy", build=lambda c: _build({"d": 5}))
    with pytest.raises(WeightsError, match="format version"):
        load_weights(path, kind="toy", build=_build, format_version=2)
    # never overwrite silently
    from backline.engines.core.errors import FileExistsRefusal

    with pytest.raises(FileExistsRefusal):
        save_weights(model, tmp_path / "m", kind="toy", config={"d": 4})
    meta_path = tmp_path / "m.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["d"] = "four"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(WeightsError):
        load_weights(path, kind="toy", build=_build)


def test_checkpoint_resumes_model_and_optimizer(tmp_path):
    torch.manual_seed(0)
    ctx = Distributed()
    model = _build({"d": 3})
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 3)).pow(2).mean().backward()
        opt.step()
    ck = Checkpointer(tmp_path, ctx)
    ck.save(3, {"model": model, "opt": opt}, {"note": "x"})
    model2 = _build({"d": 3})
    opt2 = torch.optim.Adam(model2.parameters(), 1e-2)
    step, extra = Checkpointer(tmp_path, ctx).load({"model": model2, "opt": opt2})
    assert step == 3 and extra == {"note": "x"}
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"][0]["lr"] == s2["param_groups"][0]["lr"]
    for k in s1["state"]:
        assert torch.equal(s1["state"][k]["exp_avg"], s2["state"][k]["exp_avg"])
    # and training continues identically
    x = torch.randn(5, 3)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).pow(2).mean().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.allclose(a, b)
