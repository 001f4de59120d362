"""Installing and running Tempest (its own virtualenv, from PyPI at the
version of upper-constraints.txt) against the cloud."""

import os
import shutil
import subprocess
import time

from cloud import install
from cloud import layout
from cloud import procs

INCLUDE = os.path.join(layout.REPO, 'deploy', 'tempest-include.txt')
EXCLUDE = os.path.join(layout.REPO, 'deploy', 'tempest-exclude.txt')
BIN = os.path.join(layout.TEMPEST_VENV, 'bin')


def venv_up():
    if os.path.exists(os.path.join(BIN, 'tempest')):
        return
    procs.say('installing Tempest into %s' % layout.TEMPEST_VENV)
    procs.run(['python3', '-m', 'venv', layout.TEMPEST_VENV])
    procs.run([os.path.join(BIN, 'pip'), 'install', '-q', '-c',
               install.CONSTRAINTS, 'tempest'], timeout=1200)


def run(driver, regex=None, concurrency=2):
    venv_up()
    workspace = layout.TEMPEST_WORKSPACE
    if not os.path.exists(os.path.join(workspace, '.stestr.conf')):
        shutil.rmtree(workspace, ignore_errors=True)
        # Tempest's registry of workspaces (~/.tempest) outlives the
        # directory deploy/down removed, and init refuses a known name.
        name = os.path.basename(workspace)
        procs.run([os.path.join(BIN, 'tempest'), 'workspace', 'remove',
                   '--name', name], check=False)
        procs.run([os.path.join(BIN, 'tempest'), 'init', '--name', name,
                   workspace])
    procs.run([os.path.join(layout.BIN, 'python'), '-m', 'cloud.tempest',
               'config'], env={'OS_CLIENT_CONFIG_FILE': layout.CLOUDS_YAML,
                               'PYTHONPATH': os.path.join(layout.REPO,
                                                          'deploy')})
    selection = (['--regex', regex] if regex else
                 ['--include-list', INCLUDE, '--exclude-list', EXCLUDE])
    argv = [os.path.join(BIN, 'tempest'), 'run', '--config-file',
            layout.TEMPEST_CONF, '--concurrency', str(concurrency)] + selection
    procs.say('Tempest on compute_driver %s: %s' % (driver, ' '.join(argv)))
    started = time.monotonic()
    status = subprocess.run(argv, cwd=workspace).returncode
    os.makedirs(layout.TEMPEST_RESULTS, exist_ok=True)
    # Only a run of the curated list stands for the driver in the
    # side-by-side; a --regex run is kept beside it.
    result = os.path.join(layout.TEMPEST_RESULTS, '%s%s.subunit' % (
        driver, '-regex' if regex else ''))
    with open(result, 'wb') as out:
        subprocess.run([os.path.join(BIN, 'stestr'), 'last', '--subunit'],
                       cwd=workspace, stdout=out)
    procs.say('Tempest finished in %.0f s (status %d); results in %s' % (
        time.monotonic() - started, status, result))
    return status
