"""The paper's experiment grid: which model is trained on which split and scored in which table, and the
paper's own numbers (arXiv 2503.08548, Tables I-IV) that every report prints beside ours."""

# (run key, row name, policy, training split)
MODELS = (
    ("bc_sp", "BC", "bc", "sp_train"),
    ("dp_sp", "DP", "dp", "sp_train"),
    ("sp_tla", "SP-TLA", "tla", "sp_train"),
    ("bc_mp", "BC", "bc", "mp_train"),
    ("dp_mp", "DP", "dp", "mp_train"),
    ("mp_tla", "MP-TLA", "tla", "mp_train"),
)
TABLE1 = (("bc_sp", "sp_test"), ("dp_sp", "sp_test"), ("sp_tla", "sp_test"))
TABLE2 = tuple((m, s) for m in ("bc_mp", "dp_mp", "mp_tla") for s in ("mp_test_id", "mp_test_ood"))
TABLE3_MODELS, TABLE3_CLEARANCES = ("bc_sp", "dp_sp", "sp_tla", "mp_tla"), (2.0, 1.6, 1.0)
TABLE4_MODELS, TABLE4_SHAPES = ("bc_mp", "dp_mp", "sp_tla", "mp_tla"), ("square", "triangle", "round", "hexagon")

# The paper's numbers (arXiv 2503.08548, Tables I-IV).
PAPER = {
    "table1": {"BC": (10.4, 0.803, 0.302, 0.205), "DP": (8.5, 0.370, 0.382, 0.568),
               "SP-TLA": (12.5, 0.079, 0.122, 0.173)},
    "table2": {"BC": ((18.4, 0.260, 0.655, 0.186), (15.2, 0.286, 0.722, 0.246)),
               "DP": ((7.4, 0.371, 0.348, 0.480), (8.0, 0.386, 0.369, 0.544)),
               "MP-TLA": ((18.4, 0.102, 0.114, 0.135), (16.5, 0.121, 0.102, 0.184))},
    "table3": {"BC": ((44, 2.60), (32, 4.00), (18, 4.44), (31, 3.68)),
               "DP": ((58, 2.45), (43, 4.35), (20, 4.70), (40, 3.83)),
               "SP-TLA": ((96, 3.15), (94, 3.77), (74, 4.37), (88, 3.76)),
               "MP-TLA": ((94, 3.04), (86, 3.30), (90, 4.35), (90, 3.56))},
    "table4": {"BC": ((60, 3.37), (84, 2.67), (62, 2.84), (66, 2.30)),
               "DP": ((60, 3.60), (60, 3.40), (56, 2.89), (54, 2.37)),
               "SP-TLA": ((96, 3.15), (76, 2.82), (92, 2.80), (90, 2.78)),
               "MP-TLA": ((94, 3.04), (92, 1.80), (94, 2.66), (96, 3.00))},
}
