"""The analysis of experiment results: paired statistics (:mod:`.stats`), tables and number
formats (:mod:`.tables`), an experiment directory's tables, comparisons, plots and report
(:mod:`.aggregate`, :mod:`.comparisons`, :mod:`.plots`, :mod:`.report`), the defense frontier
(:mod:`.frontier`, :mod:`.goal`, :mod:`.frontier_tables`, :mod:`.frontier_plots`), the ten-seed
study's tables (:mod:`.seeds10`) and the documentation's generated blocks (:mod:`.docs_blocks`)."""