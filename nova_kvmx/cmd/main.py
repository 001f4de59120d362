# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The ``nova-kvmx`` command: ``explain`` and ``host-check``.

Both read the node's nova.conf into Nova's own configuration object, so
every option means what it means to nova-compute. Exit status: explain 0
when the server fits, 1 when not; host-check 1 when a check fails; 2 for
bad input (with Nova's own message), on stderr.

This module imports nothing of Nova: importing Nova takes seconds, and
``explain --server`` (a client of a long-lived ``explain --serve``) must
answer in a fraction of one. The commands themselves are in
:mod:`nova_kvmx.cmd.commands`.
"""

import argparse
import sys
import warnings

# Nova still imports eventlet, which warns that it is deprecated on every
# import: noise for an operator's command.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

EXIT_BAD_INPUT = 2
USAGE_SOURCES = ('auto', 'database', 'libvirt', 'none')


def _common():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        '--config-file', action='append', metavar='PATH',
        help='the node\'s nova.conf (repeat for more files, later ones win;'
             ' default: Nova\'s search, e.g. /etc/nova/nova.conf)')
    common.add_argument('--format', choices=('table', 'json'),
                        default='table')
    common.add_argument('--debug', action='store_true',
                        help='log Nova\'s fitting decisions on stderr')
    return common


def _explain_parser(sub, common):
    ex = sub.add_parser(
        'explain', parents=[common],
        help='would a flavor fit this host, and how (or why not)',
        description='Whether and how a server of this flavor and image '
                    'would fit the host, with what is already on it, by '
                    'Nova\'s own fitting code.')
    host = ex.add_argument_group('the host')
    host.add_argument('--connection-uri', metavar='URI',
                      help='libvirt to ask (default: [libvirt] '
                           'connection_uri)')
    host.add_argument('--capabilities', metavar='PATH',
                      help='saved "virsh capabilities" output, instead of a '
                           'live libvirt')
    host.add_argument('--node-devices', metavar='DIR',
                      help='with --capabilities: directory of saved "virsh '
                           'nodedev-dumpxml" outputs (*.xml)')
    host.add_argument('--all-hosts', action='store_true',
                      help='every compute node of the cell of [database] '
                           'connection, from Nova\'s database: which fit, '
                           'and what limits the others')
    used = ex.add_argument_group('what is already on the host')
    used.add_argument(
        '--usage', choices=USAGE_SOURCES, default='auto',
        help='where to read the instances already on the host: Nova\'s '
             'database ([database] connection), libvirt\'s domains, or '
             'none (the host taken as empty); auto (default): the '
             'database if configured and reachable, else libvirt\'s '
             'domains (a saved host: --usage-file, else none)')
    used.add_argument('--usage-file', metavar='PATH',
                      help='usage saved with --save-usage (YAML or JSON)')
    used.add_argument('--save-usage', metavar='PATH',
                      help='write the usage found, to ask away from the '
                           'host with --usage-file (.yaml/.yml: YAML, else '
                           'JSON)')
    used.add_argument('--host', metavar='NAME',
                      help='the compute host\'s name in Nova\'s database '
                           '(default: [DEFAULT] host)')
    used.add_argument('--node', metavar='NAME',
                      help='its node name, if the host has several')
    flavor = ex.add_argument_group('the server')
    flavor.add_argument('--vcpus', type=int)
    flavor.add_argument('--ram', type=int, metavar='MiB')
    flavor.add_argument('--disk', type=int, default=0, metavar='GiB')
    flavor.add_argument('--extra-spec', action='append', metavar='KEY=VALUE',
                        default=[], help='a flavor extra spec (repeat)')
    flavor.add_argument('--image-property', action='append', default=[],
                        metavar='KEY=VALUE', help='an image property '
                                                  '(repeat)')
    flavor.add_argument('--flavors', metavar='PATH',
                        help='many servers in one run: a YAML or JSON list '
                             'of {name, vcpus, ram, disk, extra_specs, '
                             'image_properties}')
    ex.add_argument('--xml', action='store_true',
                    help='when it fits, also print the domain XML the '
                         'driver would define (without PCI devices and '
                         'network interfaces)')
    fast = ex.add_argument_group('answering fast')
    fast.add_argument('--serve', metavar='SOCKET',
                      help='stay running with Nova loaded, answering '
                           'explain --server SOCKET clients')
    fast.add_argument('--server', metavar='SOCKET',
                      help='have the explain --serve at SOCKET answer, '
                           'with these arguments')


def parser():
    top = argparse.ArgumentParser(
        prog='nova-kvmx', description='Operator tools of the nova-kvmx '
                                      'compute driver.')
    sub = top.add_subparsers(dest='command', required=True)
    common = _common()
    _explain_parser(sub, common)

    hc = sub.add_parser(
        'host-check', parents=[common],
        help='NFV readiness of this host: PASS/WARN/FAIL with fixes')
    hc.add_argument('--root', default='/',
                    help='root of the /proc, /sys and /dev trees to read '
                         '(default: /)')
    hc.add_argument('--connection-uri', metavar='URI',
                    help='libvirt to ask for versions (default: [kvmx] '
                         'connection_uri)')
    return top


def _check_explain(top, args):
    """Argument combinations argparse cannot express."""
    if args.serve:
        if args.server:
            top.error('--serve and --server exclude each other')
        return
    if args.flavors and (args.vcpus is not None or args.ram is not None):
        top.error('--flavors replaces --vcpus and --ram')
    if not args.flavors and (args.vcpus is None or args.ram is None):
        top.error('explain needs --vcpus and --ram (or --flavors)')


def without_server(argv):
    """The arguments less ``--server SOCKET``: what the server runs."""
    result, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == '--server':
            skip = True
        elif not arg.startswith('--server='):
            result.append(arg)
    return result


def main(argv=None, out=None, err=None):
    out, err = out or sys.stdout, err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    top = parser()
    args = top.parse_args(argv)
    if args.command == 'explain':
        _check_explain(top, args)
        if args.server:
            from nova_kvmx.cmd import serve
            return serve.ask(args.server, without_server(argv), out, err)
    from nova_kvmx.cmd import commands
    return commands.run(args, out, err)


if __name__ == '__main__':
    sys.exit(main())
