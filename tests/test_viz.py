"""gh.viz: the network model behind the pictures, the summary table, the DOT text, and both renderers
(graphviz when installed, the matplotlib layered layout always)."""
import pytest

import gpuhybrid as gh
from gpuhybrid import nd, sym, viz
from gpuhybrid.gluon import nn
from gpuhybrid.viz import render
from gpuhybrid.viz.network import network_of, without_weights

PNG = b"\x89PNG\r\n\x1a\n"


def mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(2))
    net.initialize()
    return net


class Softmax(nn.HybridBlock):
    def hybrid_forward(self, F, x):
        e = F.exp(x - F.max(x, axis=-1, keepdims=True))
        return e / F.sum(e, axis=-1, keepdims=True)


def test_mlp_network_has_one_kernel_per_layer_and_shapes_on_arrows():
    net = network_of(mlp(), (1, 512))
    assert len(net.groups) == 3 and net.groups[0] == "add > Activation"
    assert (net.kernels_per_call, net.library_calls_per_call) == (3, 3)
    gemms = [b for b in net.boxes if b.op == "dot"]             # each Dense layer's GEMM, x @ W.T
    assert [b.group for b in gemms] == [None, None, None] and gemms[0].params == 256 * 512
    assert gemms[0].detail == "256 units"
    assert {b.group for b in net.boxes if b.op == "Activation"} == {0, 1}
    assert {shape for _, _, shape in net.arrows} >= {"1×512", "1×256", "256×512", "1×128", "1×2"}
    ids = {b.id for b in net.boxes}
    assert all(a in ids and b in ids for a, b, _ in net.arrows)


def test_inputs_as_arrays_shapes_or_symbols_give_the_same_network():
    block = mlp()
    by_shape = network_of(block, (4, 512))
    by_array = network_of(block, nd.zeros((4, 512)))
    assert [b.op for b in by_shape.boxes] == [b.op for b in by_array.boxes]
    x = sym.var("x")
    graph = network_of(sym.relu(x * 2.0 + 1.0) + sym.exp(x), {"x": (4, 5)})
    assert len(graph.groups) == 1 and graph.kernels_per_call == 1
    assert network_of(sym.relu(x * 2.0 + 1.0) + sym.exp(x), {"x": (4, 5)}, fuse=False).groups == []


def test_hide_weights_drops_parameter_boxes_and_names_them_on_their_readers():
    full = network_of(mlp(), (1, 512))
    light = without_weights(full)
    assert not [b for b in light.boxes if b.op in ("param", "aux", "const")]
    assert len(light.arrows) == len(full.arrows) - 6
    first = next(b for b in light.boxes if b.op == "dot")
    assert "dense" in render.label(first, show_reads=True) and "weight" in first.reads[0]


def test_print_summary_lists_ops_kernels_params_and_launches(capsys):
    text = viz.print_summary(mlp(), (1, 512))
    assert capsys.readouterr().out.strip() == text.strip()
    assert "Total params: 164482" in text
    assert "fused kernel 0" in text and "own launch" in text
    assert "Launches per call: 6 (3 kernels + 3 library calls)" in text


def test_layout_routes_every_arrow_through_consecutive_layers():
    net = network_of(Softmax(), (8, 64))
    places, routes = render.layout(net)
    assert len(routes) == len(net.arrows)
    for (source, target, _), route in zip(net.arrows, routes):
        layers = [layer for layer, _ in route]
        assert layers == list(range(layers[0], layers[-1] + 1))
        assert route[0] == places[source] and route[-1] == places[target]
    taken = [places[b.id] for b in net.boxes]
    assert len(set(taken)) == len(taken)                   # no two boxes on one spot


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_matplotlib_fallback_draws_png_and_svg(tmp_path, suffix):
    path = viz.plot_network(Softmax(), (8, 64), tmp_path / f"softmax{suffix}", engine="matplotlib")
    data = path.read_bytes()
    assert data.startswith(PNG) if suffix == ".png" else b"<svg" in data[:2000]
    assert len(data) > 5000


def test_auto_uses_the_fallback_without_dot(tmp_path, monkeypatch):
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    path = viz.plot_network(mlp(), (1, 512), tmp_path / "mlp.png")
    assert path.read_bytes().startswith(PNG)
    with pytest.raises(RuntimeError, match="graphviz"):
        viz.plot_network(mlp(), (1, 512), tmp_path / "mlp2.png", engine="dot")


def test_dot_text_has_one_cluster_per_kernel_and_shape_labels():
    text = viz.to_dot(network_of(mlp(), (1, 512)))
    assert text.count("subgraph cluster_kernel") == 3
    assert 'label=" 1×256"' in text and "digraph" in text and "->" in text


@pytest.mark.skipif(not render.dot_available(), reason="graphviz dot is not installed")
def test_dot_renders_png_and_svg(tmp_path):
    assert viz.plot_network(mlp(), (1, 512), tmp_path / "m.png", engine="dot").read_bytes().startswith(PNG)
    assert b"<svg" in viz.plot_network(mlp(), (1, 512), tmp_path / "m.svg", engine="dot").read_bytes()[:1000]


def test_clear_errors_for_wrong_arguments(tmp_path):
    with pytest.raises(ValueError, match="svg"):
        viz.plot_network(mlp(), (1, 512), tmp_path / "mlp.jpg")
    with pytest.raises(TypeError, match="HybridBlock or a Symbol"):
        viz.plot_network(nn.Sequential(), (1, 512), tmp_path / "x.png")
    assert gh.viz is viz
