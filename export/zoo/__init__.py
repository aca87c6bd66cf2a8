"""The model zoo built with seqedge's export API: the seed tutorials' models, the UD English EWT tagger and the
tiny-shakespeare character LM, each a recipe (train or load its checkpoint) plus the facts its artifact must
show, exported through ``export.export_module`` like any user's model (``build.py``).

    registry.py   every registered name -> ModelSpec      spec.py   what a ModelSpec is, checkpoints, data
    models.py     the networks and their IO declaration  inputs.py example inputs, pos-ewt's spellings
    seeds.py      the five seed tutorials                 ewt.py / shakespeare.py   the real-data models
"""
