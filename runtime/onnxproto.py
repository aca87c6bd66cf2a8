"""What the runtime must know about an ONNX file before onnxruntime parses it, read with the standard library.

The runtime depends on numpy and onnxruntime only, not on the ``onnx`` package, so this module walks the
protobuf wire format itself, and only the few fields it needs (field numbers from ``onnx/onnx.proto``):

- every tensor stored in the file (graph initializers, sparse initializers, tensors in node attributes, in
  subgraphs, training graphs and functions), to refuse any whose data lives outside the file
  (``data_location = EXTERNAL`` or ``external_data`` entries): seqedge artifacts never use external data, and
  a tensor read from another file would escape the SHA-256 the manifest records for the model file;
- the main graph's initializer shapes and nodes, to find the embedding table an integer input indexes (a
  ``Gather`` whose indices are that input, possibly through shape-only ops), so the manifest's vocabulary
  sizes can be checked against the graph and out-of-range ids refused before they reach onnxruntime.

The walk is iterative (no recursion limit to hit) and bounded by the file's size; malformed bytes raise
``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Which length-delimited fields of which message hold which sub-message (None: a leaf we do not open).
_MODEL, _GRAPH, _NODE, _ATTR, _TENSOR, _SPARSE, _FUNCTION, _TRAINING, _ENTRY = range(9)
_CHILDREN = {
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    _NODE: {5: _ATTR},
    _ATTR: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
    _FUNCTION: {7: _NODE},
    _TRAINING: {1: _GRAPH, 2: _GRAPH},
    _TENSOR: {13: _ENTRY},
    _ENTRY: {},
}
_TENSOR_NAME, _TENSOR_DIMS, _TENSOR_LOCATION, _EXTERNAL = 8, 1, 14, 1
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP = 1, 2, 4
# Ops that move or reshape indices without changing their values: an input seen through them still indexes.
_SHAPE_ONLY = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Cast"}


@dataclass
class GraphFacts:
    """What ``scan`` found: tensors whose data lives elsewhere, and the main graph's initializers and nodes."""

    external: list[tuple[str, str]] = field(default_factory=list)  # (tensor name, location)
    initializer_dims: dict[str, tuple[int, ...]] = field(default_factory=dict)  # main graph only
    nodes: list[tuple[str, list[str], list[str]]] = field(default_factory=list)  # (op_type, inputs, outputs)

    def gathered_rows(self, graph_input: str) -> set[int]:
        """Row counts of the initializer tables that ``graph_input`` indexes through a Gather (empty if none)."""
        reach, rows = {graph_input}, set()
        for op, inputs, outputs in self.nodes:  # ONNX nodes are topologically sorted
            if op in _SHAPE_ONLY and inputs and inputs[0] in reach:
                reach.update(outputs)
            elif op == "Gather" and len(inputs) == 2 and inputs[1] in reach:
                dims = self.initializer_dims.get(inputs[0])
                if dims:
                    rows.add(dims[0])
        return rows


@dataclass
class RecordedFacts(GraphFacts):
    """Facts recorded in the manifest, for a model file this module cannot walk (ORT format): ``rows`` maps an
    integer input to the rows of the embedding table it indexes."""

    rows: dict[str, int] = field(default_factory=dict)

    def gathered_rows(self, graph_input: str) -> set[int]:
        return {self.rows[graph_input]} if graph_input in self.rows else set()


def _varint(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError(f"truncated or malformed varint at byte {pos}")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(data: memoryview, start: int, end: int):
    """Yield (field number, wire type, value or (start, end) for length-delimited) of one message."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos, end)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varint(data, pos, end)
            if pos + size > end:
                raise ValueError(f"field {number} at byte {pos} runs past the end of its message")
            yield number, wire, (pos, pos + size)
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise ValueError(f"field {number} runs past the end of its message")
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {pos}")


def scan(model_bytes: bytes) -> GraphFacts:
    """Walk an ONNX ModelProto; raise ValueError when the bytes are not a well-formed protobuf."""
    data = memoryview(model_bytes)
    facts = GraphFacts()
    main_graph: tuple[int, int] | None = None
    # (message kind, start, end, whether it is an initializer of the main graph)
    stack: list[tuple[int, int, int, bool]] = [(_MODEL, 0, len(data), False)]
    while stack:
        kind, start, end, main_initializer = stack.pop()
        if kind == _TENSOR:
            _tensor(data, start, end, facts, main_initializer)
            continue
        for number, wire, value in _fields(data, start, end):
            child = _CHILDREN[kind].get(number)
            if child is None or wire != 2:
                continue
            if kind == _MODEL and number == 7:
                main_graph = value
            stack.append((child, *value, kind == _GRAPH and number == 5 and (start, end) == main_graph))
    if main_graph is not None:
        facts.nodes = [_node(data, *v) for n, w, v in _fields(data, *main_graph) if n == 1 and w == 2]
    return facts


def _tensor(data: memoryview, start: int, end: int, facts: GraphFacts, main_initializer: bool) -> None:
    name, location, dims, external_location = "", 0, [], None
    for number, wire, value in _fields(data, start, end):
        if number == _TENSOR_NAME and wire == 2:
            name = bytes(data[value[0]:value[1]]).decode("utf-8", "replace")
        elif number == _TENSOR_LOCATION and wire == 0:
            location = value
        elif number == _TENSOR_DIMS and wire == 0:
            dims.append(value)
        elif number == _TENSOR_DIMS and wire == 2:  # packed
            pos = value[0]
            while pos < value[1]:
                d, pos = _varint(data, pos, value[1])
                dims.append(d)
        elif number == 13 and wire == 2:  # external_data: StringStringEntryProto {key = 1, value = 2}
            entry = {n: bytes(data[v[0]:v[1]]).decode("utf-8", "replace") for n, w, v in _fields(data, *value)
                     if w == 2}
            if entry.get(1) == "location":
                external_location = entry.get(2, "")
            elif external_location is None:
                external_location = ""
    if location == _EXTERNAL or external_location is not None:
        facts.external.append((name, external_location or "(no location)"))
    elif main_initializer:
        facts.initializer_dims[name] = tuple(dims)


def _node(data: memoryview, start: int, end: int) -> tuple[str, list[str], list[str]]:
    op, inputs, outputs = "", [], []
    for number, wire, value in _fields(data, start, end):
        if wire != 2 or number not in (_NODE_INPUT, _NODE_OUTPUT, _NODE_OP):
            continue
        text = bytes(data[value[0]:value[1]]).decode("utf-8", "replace")
        if number == _NODE_OP:
            op = text
        else:
            (inputs if number == _NODE_INPUT else outputs).append(text)
    return op, inputs, outputs
