"""The benchmark instrument behind ``make bench`` (entry point: ``bench/run.py``).

``scenarios/`` measures, ``stats`` summarises repetitions, ``report`` and
``charts`` turn a result dict into ``latest.md`` and PNGs. ``peers.py`` (the
other systems compared against) and ``bare_echo.py`` (the Starlette ceiling)
are what the HTTP scenarios run side by side with wasmhost.
"""
