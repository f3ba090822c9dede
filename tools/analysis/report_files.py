"""What the analysis tools share to write their reports: a CSV of dict rows
and matplotlib's pyplot, which is optional (requirements/optional.txt)."""
import csv
from typing import List, Optional, Sequence

NO_MATPLOTLIB = ('matplotlib is not installed: no plot (pip install '
                 'matplotlib, see requirements/optional.txt)')


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend; None without
    matplotlib (the tool then writes its tables and says NO_MATPLOTLIB)."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def write_csv(path, rows: List[dict],
              fieldnames: Optional[Sequence[str]] = None) -> None:
    """``rows`` as CSV, columns ``fieldnames`` (default: the first row's
    keys; other keys of a row are left out)."""
    with open(path, 'w', newline='') as file:
        writer = csv.DictWriter(file, fieldnames=list(fieldnames or rows[0]),
                                extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)
