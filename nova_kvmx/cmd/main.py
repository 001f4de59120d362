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
"""

import argparse
import logging
import sys
import warnings

# Nova still imports eventlet, which warns that it is deprecated on every
# import: noise for an operator's command.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

from nova import exception  # noqa: E402
from nova import objects  # noqa: E402
from nova.pci import request as pci_request  # noqa: E402
from oslo_config import cfg  # noqa: E402

from nova_kvmx import conf as kvmx_conf  # noqa: E402
from nova_kvmx.cmd import explain  # noqa: E402
from nova_kvmx.cmd import host_check  # noqa: E402
from nova_kvmx.cmd import hostdata  # noqa: E402
from nova_kvmx.cmd import report  # noqa: E402
from nova_kvmx.cmd import request  # noqa: E402
from nova_kvmx.host import resources  # noqa: E402

CONF = kvmx_conf.CONF
EXIT_BAD_INPUT = 2


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


def parser():
    top = argparse.ArgumentParser(
        prog='nova-kvmx', description='Operator tools of the nova-kvmx '
                                      'compute driver.')
    sub = top.add_subparsers(dest='command', required=True)
    common = _common()

    ex = sub.add_parser(
        'explain', parents=[common],
        help='would a flavor fit this host, and how (or why not)',
        description='Whether and how a server of this flavor and image '
                    'would fit the host, by Nova\'s own fitting code.')
    ex.add_argument('--connection-uri', metavar='URI',
                    help='libvirt to ask (default: [kvmx] connection_uri)')
    ex.add_argument('--capabilities', metavar='PATH',
                    help='saved "virsh capabilities" output, instead of a '
                         'live libvirt')
    ex.add_argument('--node-devices', metavar='DIR',
                    help='with --capabilities: directory of saved "virsh '
                         'nodedev-dumpxml" outputs (*.xml)')
    ex.add_argument('--vcpus', type=int, required=True)
    ex.add_argument('--ram', type=int, required=True, metavar='MiB')
    ex.add_argument('--disk', type=int, default=0, metavar='GiB')
    ex.add_argument('--extra-spec', action='append', metavar='KEY=VALUE',
                    default=[], help='a flavor extra spec (repeat)')
    ex.add_argument('--image-property', action='append', default=[],
                    metavar='KEY=VALUE', help='an image property (repeat)')
    ex.add_argument('--xml', action='store_true',
                    help='when it fits, also print the domain XML the '
                         'driver would define (without PCI devices and '
                         'network interfaces)')

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


def load_config(config_files):
    """Nova's CONF from the node's files."""
    CONF(args=[], project='nova', default_config_files=config_files)
    # Nova parses [pci] alias once per process; this may be a new config.
    pci_request.get_alias_from_config.cache_clear()


def _setup_logging(debug):
    logging.basicConfig(
        stream=sys.stderr, format='%(levelname)s %(name)s: %(message)s',
        level=logging.DEBUG if debug else logging.WARNING)
    if not debug:
        # Nova's fitting warns about what explain reports as a reason.
        logging.getLogger('nova.virt.hardware').setLevel(logging.ERROR)


def _local_gb():
    try:
        return resources.disk_gb(CONF.instances_path)[0]
    except OSError:
        return None


def run_explain(args, out):
    if args.node_devices and not args.capabilities:
        raise exception.InvalidInput(
            reason='--node-devices needs --capabilities')
    req = request.build(
        args.vcpus, args.ram, args.disk,
        request.parse_pairs(args.extra_spec, '--extra-spec'),
        request.parse_pairs(args.image_property, '--image-property'))
    if args.capabilities:
        facts = hostdata.from_files(args.capabilities, args.node_devices)
        local_gb = None
    else:
        facts = hostdata.from_libvirt(
            args.connection_uri or CONF.kvmx.connection_uri)
        local_gb = _local_gb()
    result = explain.explain(facts, req, local_gb=local_gb)
    xml = None
    if args.xml and result.fits:
        xml = explain.domain_xml(facts, req, result.fitted)
    if args.format == 'json':
        out.write(report.to_json(dict(result.as_dict(), domain_xml=xml)) +
                  '\n')
    else:
        out.write('\n'.join(report.explanation_lines(result.as_dict())) + '\n')
        if xml:
            out.write('\nDomain XML:\n%s\n' % xml)
    return 0 if result.fits else 1


def run_host_check(args, out):
    results = host_check.run(
        args.root, args.connection_uri or CONF.kvmx.connection_uri)
    if args.format == 'json':
        out.write(report.to_json([r.as_dict() for r in results]) + '\n')
    else:
        out.write('\n'.join(report.check_lines(results)) + '\n')
    return 1 if any(r.status == host_check.FAIL for r in results) else 0


def main(argv=None, out=None, err=None):
    out, err = out or sys.stdout, err or sys.stderr
    args = parser().parse_args(argv)
    _setup_logging(args.debug)
    objects.register_all()
    try:
        load_config(args.config_file)
        if args.command == 'explain':
            return run_explain(args, out)
        return run_host_check(args, out)
    except (exception.NovaException, cfg.Error) as ex:
        message = (ex.format_message()
                   if isinstance(ex, exception.NovaException) else str(ex))
        err.write('nova-kvmx %s: error: %s\n' % (args.command, message))
        return EXIT_BAD_INPUT


if __name__ == '__main__':
    sys.exit(main())
