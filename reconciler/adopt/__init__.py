"""Adopting what already runs: certificates and keys found on disk (``scan``,
``proposal``), and certificates ACM already holds with the listeners,
distributions and domains that serve them (``acm_record``, ``aws_inventory``).

Nothing here issues or deploys: a scan or an AWS inventory only proposes YAML,
and ``import --acm-arn`` records what is there so that the next plan has
nothing to do."""
