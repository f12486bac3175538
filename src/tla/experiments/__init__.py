"""The paper's experiments on top of evaluation: the table grid and the paper's numbers (`tables`), the
harder closed-loop conditions (`robustness`), `tla reproduce` (`reproduce`) and its report (`report`),
and the input ablation (`ablation`). This is the only layer that trains, evaluates and reports together;
nothing below it imports it."""
