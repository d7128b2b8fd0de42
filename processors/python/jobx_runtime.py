"""jobx runtime for JobX-style Python handlers (Python 3.11, stdlib only).

Usage:
  jobx_runtime.py run <handler.py>         run one invocation (type from JOBX_HANDLER_TYPE)
  jobx_runtime.py check <file> <type>      compile the source on stdin; report syntax errors
  jobx_runtime.py zygote <socket path>     serve forked invocations on a unix socket
                                          (fd:N: an inherited listening socket)

A handler file is a function body. It is wrapped in
`def _jobx_handler(arguments)` (mapper) or `def _jobx_handler(results)`
(combiner, reducer) at the syntax-tree level, so line numbers in tracebacks
are those of the original file.

Exit codes: 0 success, 1 the handler failed, 2 the handler could not be loaded
or the runtime was misused.
"""

import ast
import base64
import builtins
import collections
import gc
import http.client
import io
import json
import urllib.parse
import logging
import marshal
import os
import resource
import random  # noqa: F401  (pre-imported so that forked children are warm)
import selectors
import signal
import _signal  # signal.signal without its conversions to and from enums
import socket
import subprocess
import sys
import threading
import time
import traceback
import types

WRAPPER = '_jobx_handler'
SELF = globals().get('__file__', '<jobx runtime>')
NOTIFY_PREFIX = 'JOBX-NOTIFY '
HANDLER_TYPES = ('mapper', 'combiner', 'reducer')


class LoadError(Exception):
    """The handler cannot be compiled; the message names file and line."""


# --- compilation -------------------------------------------------------------

def arg_name(handler_type):
    return 'arguments' if handler_type == 'mapper' else 'results'


def compile_source(source, filename, handler_type):
    """Compiles a handler body wrapped in a function; returns a code object."""
    try:
        tree = ast.parse(source, filename, 'exec')
        func = ast.FunctionDef(
            name=WRAPPER,
            args=ast.arguments(posonlyargs=[], args=[ast.arg(arg=arg_name(handler_type))],
                               vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None,
                               defaults=[]),
            body=tree.body or [ast.Pass()],
            decorator_list=[], returns=None, type_comment=None, lineno=1, col_offset=0)
        module = ast.Module(body=[func], type_ignores=[])
        ast.fix_missing_locations(module)
        return compile(module, filename, 'exec', dont_inherit=True)
    except SyntaxError as e:
        where = '%s:%s' % (e.filename or filename, e.lineno or 0)
        text = ''
        if e.text:
            text = '\n    ' + e.text.rstrip('\n').strip()
        raise LoadError('%s: syntax error: %s%s' % (where, e.msg, text)) from None
    except (ValueError, TypeError) as e:  # e.g. NUL bytes
        raise LoadError('%s: cannot compile: %s' % (filename, e)) from None


def compile_file(path, handler_type):
    try:
        with open(path, encoding='utf-8') as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise LoadError('%s: cannot read handler: %s' % (path, e)) from None
    return compile_source(source, path, handler_type)


# --- the handler scope (JobX's injected names) --------------------------------

class MrConfigure(object):
    """A mapper's first item: where its pairs go."""


class MrConfigureToMap(MrConfigure):
    def __init__(self, next_step_name):
        self.next_step_name = next_step_name

    def directive(self):
        return {'jobx': 'map', 'step': self.next_step_name}


class MrConfigureToReturn(MrConfigure):
    def directive(self):
        return {'jobx': 'return'}


class _Notify(object):
    """NOTIFY: any method (info, warning, error, exception...) formats
    msg % args and writes one JSON line prefixed JOBX-NOTIFY to stderr. It
    never raises."""

    def __init__(self, handler):
        self._handler = handler

    def __getattr__(self, level):
        if level.startswith('__'):
            raise AttributeError(level)

        def notify(msg, *args, **kwargs):
            try:
                try:
                    text = (msg % args) if args else str(msg)
                except Exception:
                    text = '%s %r' % (msg, args)
                record = {
                    'level': level,
                    'message': text,
                    'handler': self._handler,
                    'workflow': os.environ.get('JOBX_WORKFLOW', ''),
                    'request_id': os.environ.get('JOBX_REQUEST_ID', ''),
                    'invocation_id': os.environ.get('JOBX_INVOCATION_ID', ''),
                }
                if sys.exc_info()[0] is not None and (level == 'exception' or kwargs.get('exc_info')):
                    record['traceback'] = traceback.format_exc()
                sys.stderr.write(NOTIFY_PREFIX + json.dumps(record, default=str) + '\n')
                sys.stderr.flush()
            except Exception:
                pass
        return notify


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__('localhost', timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


# The largest session value, as JSON bytes: kvmodel.MaxSessionValueBytes.
SESSION_VALUE_LIMIT = 1048576


class TooLargeError(ValueError):
    """Data over one of jobx's size limits; the message names the limit."""


def _services_call(method, path, body=None, raw=None, decode=True):
    """One call to the runner's services endpoint (JOBX_SERVICES, a unix
    socket), authenticated by this invocation's JOBX_TOKEN. Returns (status,
    decoded JSON body or None)."""
    url = os.environ.get('JOBX_SERVICES', '')
    if not url.startswith('unix:'):
        raise RuntimeError('the jobx services endpoint is not available: JOBX_SERVICES is not set')
    conn = _UnixHTTPConnection(url[len('unix:'):])
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={
            'Authorization': 'Bearer ' + os.environ.get('JOBX_TOKEN', ''),
            'Content-Type': 'application/json'})
        resp = conn.getresponse()
        raw_body = resp.read()
    finally:
        conn.close()
    if resp.status == 413:
        raise TooLargeError(raw_body.decode(errors='replace').strip())
    if resp.status >= 400 and resp.status != 404:
        raise RuntimeError('jobx services %s %s: %d %s' % (method, path, resp.status, raw_body.decode(errors='replace').strip()))
    if not decode:
        return resp.status, raw_body
    return resp.status, (json.loads(raw_body) if raw_body and resp.status < 300 else None)


class _Sessions(object):
    """S_GET, S_SET and S_LIST: the private session of the map invocation
    (read-write for its mapper and combiner, read-only for its reducer)."""

    def __init__(self, url):
        self._url = url

    def get(self, key):
        status, value = _services_call('GET', '/v1/session/' + urllib.parse.quote(str(key), safe=''))
        if status == 404:
            raise KeyError(key)
        return value

    def set(self, key, value):
        data = json.dumps(value).encode()
        if len(data) > SESSION_VALUE_LIMIT:
            raise TooLargeError('session value of key %s is %d bytes, over the %d-byte session value limit'
                                % (json.dumps(str(key), ensure_ascii=False), len(data), SESSION_VALUE_LIMIT))
        _services_call('PUT', '/v1/session/' + urllib.parse.quote(str(key), safe=''), raw=data)

    def list(self):
        _, items = _services_call('GET', '/v1/session')
        for k, v in items or []:
            yield (k, v)


class _FSFile(io.BytesIO):
    """A file of the shared filesystem opened by FS.open: read in full on
    open, written back on close."""

    def __init__(self, path, mode, data=b''):
        super().__init__(data)
        self._path, self._mode = path, mode
        if 'a' in mode:
            self.seek(0, 2)

    def close(self):
        if not self.closed and any(c in self._mode for c in 'wax+'):
            _services_call('PUT', _fs_url(self._path), raw=self.getvalue())
        super().close()


def _fs_url(p, **query):
    query['path'] = str(p)
    return '/v1/fs?' + urllib.parse.urlencode(query)


class _FS(object):
    """JobX's FS: the workflow's shared filesystem (/working/<workflow>),
    through the runner's services endpoint, for every backend. Paths are
    relative to the workflow's root; none may leave it."""

    def _post(self, op, path, to=None):
        query = {'op': op} if to is None else {'op': op, 'to': str(to)}
        status, _ = _services_call('POST', _fs_url(path, **query))
        if status == 404:
            raise FileNotFoundError(path)

    def mkdir(self, path):
        self._post('mkdir', path)

    def rmdir(self, path):
        self._post('rmdir', path)

    def cp(self, src, dst):
        self._post('cp', src, dst)

    def cpr(self, src, dst):
        self._post('cpr', src, dst)

    def mv(self, src, dst):
        self._post('mv', src, dst)

    def rm(self, path):
        status, _ = _services_call('DELETE', _fs_url(path))
        if status == 404:
            raise FileNotFoundError(path)

    def get_stat(self, path):
        status, st = _services_call('GET', _fs_url(path, op='stat'))
        if status == 404:
            raise FileNotFoundError(path)
        return st

    stat = get_stat

    def get_filesize(self, path):
        return self.get_stat(path)['size']

    def exists(self, path):
        status, _ = _services_call('GET', _fs_url(path, op='stat'))
        return status != 404

    def isfile(self, path):
        return self.exists(path) and not self.get_stat(path)['is_dir']

    def isdir(self, path):
        return self.exists(path) and self.get_stat(path)['is_dir']

    def ls(self, path='/'):
        status, entries = _services_call('GET', _fs_url(path, op='ls'))
        if status == 404:
            raise FileNotFoundError(path)
        for e in entries:
            yield (e['name'], e)

    def open(self, path, mode='r'):
        data = b''
        if 'w' not in mode and 'x' not in mode:
            status, data = _services_call('GET', _fs_url(path), decode=False)
            if status == 404:
                if 'a' not in mode:
                    raise FileNotFoundError(path)
                data = b''
        f = _FSFile(path, mode, data)
        if 'b' in mode:
            return f
        return io.TextIOWrapper(f, encoding='utf-8')


def _print(msg=''):
    sys.stderr.write('%s\n' % (msg,))
    sys.stderr.flush()


def _run(cmd, input_data=None, success_code=0, env=None):
    """RUN: runs cmd (a string runs through the shell), logs its output to
    stderr, raises ValueError("Command failed") when success_code is not None
    and differs from the return code, and returns the return code."""
    if isinstance(input_data, str):
        input_data = input_data.encode('utf-8')
    p = subprocess.Popen(cmd, shell=isinstance(cmd, str), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = p.communicate(input_data)
    for data in (out, err):
        if data:
            _print(data.decode('utf-8', 'replace').rstrip('\n'))
    if success_code is not None and p.returncode != success_code:
        raise ValueError('Command failed')
    return p.returncode


def _join(*parts):
    return '/'.join(parts)


LOG_FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'

# The handler name, handler and formatter of the last make_logger, with
# their attributes as made: a kept child's next run puts them back as made
# instead of making new ones (most of a logger's cost).
_log_made = None


def make_logger(handler_name):
    """LOG: a logger writing to this run's stderr at the level of
    JOBX_LOG_LEVEL, with nothing a previous run of the process set on it
    or its handler and formatter."""
    global _log_made
    logger = logging.getLogger('MR_HANDLER.RAW.%s' % handler_name)
    made = _log_made
    if made is None or made[0] != handler_name:
        h = logging.StreamHandler(sys.stderr)
        f = logging.Formatter(LOG_FORMAT)
        h.setFormatter(f)
        made = _log_made = (handler_name, h, dict(h.__dict__), f, dict(f.__dict__),
                            f._style, dict(f._style.__dict__))
    _, h, h_attrs, f, f_attrs, style, style_attrs = made
    for obj, attrs in ((h, h_attrs), (f, f_attrs), (style, style_attrs)):
        obj.__dict__.clear()
        obj.__dict__.update(attrs)
    # Fresh where a previous run could have changed them in place (or
    # left a thread holding the lock).
    h.filters = []
    h.lock = threading.RLock()
    h.stream = sys.stderr
    logger.propagate = False
    logger.disabled = False
    logger.filters = []
    logger.handlers = [h]
    logger.setLevel(os.environ.get('JOBX_LOG_LEVEL', 'DEBUG').upper())
    return logger


def make_globals(handler_name):
    sessions = _Sessions(os.environ.get('JOBX_SESSION_URL', ''))
    g = {
        '__builtins__': builtins,
        '__name__': 'handler(%s)' % handler_name,
        '__doc__': None,
        '__package__': None,
        'S_GET': sessions.get,
        'S_SET': sessions.set,
        'S_LIST': sessions.list,
        'MrConfigureToMap': MrConfigureToMap,
        'MrConfigureToReturn': MrConfigureToReturn,
        'FS': _FS() if os.environ.get('JOBX_FS') else None,
        'SEP': '/',
        'JOIN': _join,
        'LOG': make_logger(handler_name),
        'NOTIFY': _Notify(handler_name),
        'PRINT': _print,
        'RUN': _run,
    }
    # Scope-factory variables, with their JSON types (a number stays a
    # number, as JobX's scope factories gave Python objects).
    typed = os.environ.get('JOBX_SCOPE_JSON')
    if typed:
        g.update(json.loads(typed))
    else:
        for name in os.environ.get('JOBX_SCOPE_VARS', '').split(','):
            name = name.strip()
            if name and name in os.environ:
                g[name] = os.environ[name]
    return g


# --- one invocation ------------------------------------------------------------

class ProtocolError(Exception):
    pass


def read_input(stream, handler_type):
    """The [key, value] (mapper) or [key, [value, ...]] items of stdin, one
    JSON value per line. The lines are decoded in one call (a call per line
    costs several times more); anything wrong is found again line by line,
    for an error that names the line."""
    raw = stream.read().split('\n')
    lines = [line for line in raw if line.strip()]
    try:
        items = json.loads('[' + ','.join(lines) + ']')
    except (ValueError, RecursionError):
        items = None
    if items is not None and len(items) == len(lines) and all(
            isinstance(item, list) and len(item) == 2 and (handler_type == 'mapper' or isinstance(item[1], list))
            for item in items):
        return items
    return _read_lines(raw, handler_type)


def _read_lines(lines, handler_type):
    items = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as e:
            raise ProtocolError('stdin line %d: bad JSON: %s' % (n, e)) from None
        if not isinstance(item, list) or len(item) != 2:
            raise ProtocolError('stdin line %d: want [key, value], got %s' % (n, line.strip()[:200]))
        if handler_type != 'mapper' and not isinstance(item[1], list):
            raise ProtocolError('stdin line %d: want [key, [value, ...]], got %s' % (n, line.strip()[:200]))
        items.append(item)
    return items


# json.dumps builds an encoder, and JSONEncoder.encode a C encoder, per
# call: a third of a small handler's CPU. Keep one C encoder; its circular
# reference markers are cleared after a failed call, so that a stale entry
# cannot fail a later one.
_ENCODER = json.JSONEncoder(separators=(',', ':'))
_MARKERS = {}
_C_ENCODE = None
if json.encoder.c_make_encoder is not None:
    _C_ENCODE = json.encoder.c_make_encoder(
        _MARKERS, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ':', ',',
        False, False, True)


def _dumps(value):
    """json.dumps(value, separators=(',', ':'))."""
    if _C_ENCODE is None:
        return _ENCODER.encode(value)
    try:
        return ''.join(_C_ENCODE(value, 0))
    except BaseException:
        _MARKERS.clear()
        raise


def _encode(item, n, handler_type):
    if isinstance(item, MrConfigure):
        raise ProtocolError('item %d: MrConfigure may only be the first item of a mapper' % n)
    if not isinstance(item, (list, tuple)) or len(item) != 2:
        raise ProtocolError('item %d: want a (key, value) pair, got %r' % (n, item))
    if handler_type == 'combiner' and not isinstance(item[1], (list, tuple)):
        raise ProtocolError('item %d: a combiner yields (key, [value, ...]), got %r' % (n, item))
    try:
        return _dumps(item)
    except (TypeError, ValueError, RecursionError) as e:
        raise ProtocolError('item %d: not JSON-serialisable: %s' % (n, e)) from None


def invoke(code, handler_type, handler_name, stdin, out):
    """Runs a compiled handler on the items of stdin, writing protocol lines to
    out. Returns the exit code; failures are reported on stderr."""
    try:
        items = read_input(stdin, handler_type)
    except ProtocolError as e:
        sys.stderr.write('jobx: %s\n' % e)
        return 2
    g = make_globals(handler_name)
    try:
        exec(code, g)
        fn = g.pop(WRAPPER)
        result = fn(items)
        if handler_type == 'mapper':
            if not hasattr(result, '__next__') or not hasattr(result, 'send'):
                raise ProtocolError('a mapper must be a generator: its first item is '
                                    'MrConfigureToMap(step) or MrConfigureToReturn(), '
                                    'then its pairs (got %s)' % type(result).__name__)
            it = iter(result)
            first = next(it, None)
            if not isinstance(first, MrConfigure):
                raise ProtocolError('a mapper\'s first item must be MrConfigureToMap(step) '
                                    'or MrConfigureToReturn(), got %r' % (first,))
            out.write(json.dumps(first.directive(), separators=(',', ':')) + '\n')
        else:
            if result is None:
                result = ()
            try:
                it = iter(result)
            except TypeError:
                raise ProtocolError('a %s must yield or return an iterable of pairs, got %s'
                                    % (handler_type, type(result).__name__)) from None
        # The common item (a plain pair) is encoded inline and written in
        # batches of lines; _encode takes any other, or one that fails, and
        # says what is wrong.
        combiner = handler_type == 'combiner'
        lines = []
        for n, item in enumerate(it, 1):
            line = None
            t = type(item)
            if (t is tuple or t is list) and len(item) == 2 and (
                    not combiner or isinstance(item[1], (list, tuple))):
                try:
                    line = _dumps(item)
                except (TypeError, ValueError, RecursionError):
                    pass
            lines.append(line if line is not None else _encode(item, n, handler_type))
            if len(lines) >= 256:
                out.write('\n'.join(lines) + '\n')
                lines = []
        if lines:
            out.write('\n'.join(lines) + '\n')
        out.flush()
    except ProtocolError as e:
        sys.stderr.write('jobx: handler %s: %s\n' % (handler_name, e))
        return 1
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code == 0:
            sys.stderr.write('jobx: handler %s called exit(0) before finishing\n' % handler_name)
            return 1
        return code
    except BaseException:
        tb = sys.exc_info()[2]
        # Drop the runtime's own frames.
        while tb is not None and tb.tb_frame.f_code.co_filename == SELF:
            tb = tb.tb_next
        etype, evalue = sys.exc_info()[:2]
        sys.stderr.write(''.join(traceback.format_exception(etype, evalue, tb)))
        return 1
    return 0


def run(path, handler_type, handler_name, code=None, stdin=None):
    """The whole of `run` mode, also used by forked zygote children. Protocol
    output goes to the original stdout; fd 1 is then pointed at stderr so that
    print() and subprocesses cannot corrupt the protocol. stdin is a text
    stream over fd 0 to read the items from (a zygote child's sys.stdin);
    without it one is opened."""
    try:
        if handler_type not in HANDLER_TYPES:
            raise LoadError('JOBX_HANDLER_TYPE must be mapper, combiner or reducer, got %r'
                            % handler_type)
        if isinstance(code, LoadError):
            raise code
        if code is None:
            code = compile_file(path, handler_type)
    except LoadError as e:
        sys.stderr.write('jobx: %s\n' % e)
        sys.stderr.flush()
        return 2
    out = os.fdopen(os.dup(1), 'w', encoding='utf-8', buffering=1 << 16)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if stdin is None:
        stdin = open(0, 'r', encoding='utf-8', closefd=False)
    status = invoke(code, handler_type, handler_name, stdin, out)
    try:
        out.flush()
    except BrokenPipeError:
        status = status or 1
    try:
        out.close()
    except OSError:
        pass
    try:
        sys.stderr.flush()
    except Exception:
        pass
    return status


# --- zygote --------------------------------------------------------------------

_WARM_UP_SOURCE = '''"""
Warm-up.

**
handler_type: mapper
"""
LOG.debug("warm-up")
yield MrConfigureToReturn()
for k, v in arguments:
    yield (k, [v, {"x": 1.5, "y": None}])
'''


WARM_UP = os.environ.get('JOBX_ZYGOTE_WARMUP', '1') != '0'


_warm_up_code = None


def _compile_warm_up():
    """Compiles the warm-up handler once, in the zygote, so that forked
    children inherit it instead of each parsing and compiling it again."""
    global _warm_up_code
    if WARM_UP and _warm_up_code is None:
        _warm_up_code = compile_source(_WARM_UP_SOURCE, '<warm-up>', 'mapper')


def _warm_up():
    """Runs a throwaway invocation in a pre-forked child, so that the pages a
    handler run touches are copied before the real invocation arrives."""
    stderr = sys.stderr
    sys.stderr = io.StringIO()
    try:
        code = _warm_up_code or compile_source(_WARM_UP_SOURCE, '<warm-up>', 'mapper')
        invoke(code, 'mapper', 'warmup', io.StringIO('["k", 1]\n["k", "two"]\n'), io.StringIO())
    except BaseException:
        pass
    finally:
        sys.stderr = stderr

_prctl = None


def _set_dumpable(on):
    """Sets PR_SET_DUMPABLE (zygote mode only). A process that is not
    dumpable cannot be traced, nor its memory read or written through
    /proc, by the other processes of its user: without it a handler could
    reach into the zygote, or into a child waiting for the next invocation,
    and so into later invocations (where the kernel has no Yama to stop
    it). A child is dumpable while it runs a handler, so the handler sees
    its own /proc entries as usual."""
    if _prctl is not None:
        _prctl(4, 1 if on else 0, 0, 0, 0)  # PR_SET_DUMPABLE


def _child_main(fn):
    """Runs fn in a forked child and exits with its status; the child never
    returns into the zygote's loop, whatever fn raises."""
    status = 1
    try:
        status = fn()
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        os._exit(status)


class Zygote(object):
    """A single-threaded fork server. Per connection: one JSON request line
    with three fds (stdin, stdout, stderr); reply {"pid": N} and later
    {"exit_code": c} or {"signal": s}. A client that hangs up before its child
    ends gets the child's process group killed.

    A request with a "reuse" key (a handler whose header says `reuse:
    request` or `reuse: handler`; the runner derives the key from the
    request or the handler) may run on a parked child: one that ran the same
    handler file for the same key, exited 0 and kept its process.
    Such a child replies {"exit_code": 0, "parked": true}; it is retired
    after PARK_SECONDS idle or MAX_USES runs, and no more than MAX_PARKED
    wait per key, MAX_PARKED_TOTAL in all (the oldest go first).

    A reusable request that also says "lane": true asks for the child
    itself: when the child is kept, the final reply carries, as its one
    file descriptor, the zygote's end of the child's control socket, and the
    zygote lets go of it. The client then sends the child the key's next
    requests (same line, same three fds) and reads its status line
    ({"exit_code": c, "parked": bool}) there, with no hop through the
    zygote; it retires the child by closing the socket. The zygote still
    reaps the child: a client that reads end-of-file on a lane, with no
    status, asks {"status_of": pid} on a new connection (no fds) and gets
    the child's exit or signal once it is reaped."""

    MAX_CODE_CACHE = 512
    PARK_SECONDS = float(os.environ.get('JOBX_ZYGOTE_PARK_SECONDS', '1'))
    MAX_PARKED = 16
    MAX_PARKED_TOTAL = 32

    def __init__(self, sock_path):
        self.sock_path = sock_path
        self.sel = selectors.DefaultSelector()
        self.code_cache = collections.OrderedDict()
        self.children = {}  # pid -> (conn, pidfd)
        # Pre-forked, warmed-up children waiting for an invocation, as
        # (pid, socket to send it on): forking and the first touches of the
        # heap (copy-on-write faults) then happen off the critical path.
        self.idle = collections.deque()
        self.prefork_target = int(os.environ.get('JOBX_ZYGOTE_PREFORK', '2'))
        # Parked children by reuse key: lists of (pid, socket, parked at).
        self.parked = {}
        self.reuse_keys = {}  # pid -> reuse key of the run it was given
        # Children whose control socket went to a client (lanes): wanted
        # holds those whose request asked for it, lanes those handed over.
        self.wanted_lane = set()
        self.lanes = set()
        self.lane_status = collections.OrderedDict()  # pid -> final reply
        self.status_waiters = {}  # pid -> connections asking status_of

    def serve(self):
        global _prctl
        try:
            import ctypes
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (ImportError, OSError, AttributeError):
            pass
        # Children inherit it: pre-forked and parked ones wait undumpable.
        _set_dumpable(False)
        if self.sock_path.startswith('fd:'):
            # A socket bound and listening outside the sandbox, inherited:
            # no path to it exists where handlers run.
            self.listener = socket.socket(fileno=int(self.sock_path[3:]))
        else:
            try:
                os.unlink(self.sock_path)
            except FileNotFoundError:
                pass
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(self.sock_path)
            self.listener.listen(128)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, ('accept', None))
        _compile_warm_up()
        self.refill()
        # The parent keeps our stdin open; EOF means it went away.
        self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, ('parent', None))
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        # Children start with a frozen heap, so their collections do not
        # touch (and copy) the parent's pages.
        gc.disable()
        while True:
            # Refill the pre-forked pool only when nothing else is waiting,
            # so a fork never delays an exit report or a request.
            timeout = None
            if self.prefork_target > 0 and not self.idle:
                timeout = 0
            elif len(self.idle) < self.prefork_target:
                timeout = 0.002
            if self.parked:
                wait = self.retire_parked()
                if wait is not None and (timeout is None or wait < timeout):
                    timeout = wait
            events = self.sel.select(timeout=timeout)
            if not events:
                if len(self.idle) < self.prefork_target:
                    self.prefork()
                continue
            for key, _ in events:
                kind, state = key.data
                if kind == 'accept':
                    self.accept()
                elif kind == 'conn':
                    self.read_request(key.fileobj, state)
                elif kind == 'child':
                    self.reap(state)
                elif kind == 'status':
                    self.early_status(key.fileobj, state)
                elif kind == 'parent':
                    if not os.read(sys.stdin.fileno(), 4096):
                        return

    def accept(self):
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        self.sel.register(conn, selectors.EVENT_READ, ('conn', {'buf': b'', 'fds': [], 'pid': None}))

    def close_conn(self, conn, state):
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        for fd in state['fds']:
            _close(fd)
        state['fds'] = []
        conn.close()

    def read_request(self, conn, state):
        try:
            data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds = b'', []
        state['fds'].extend(fds)
        if state['pid'] is not None:
            # After the request only hang-ups are expected.
            if not data:
                pid = state['pid']
                _kill_group(pid)
                entry = self.children.get(pid)
                if entry is not None:
                    entry[0] = None
                self.close_conn(conn, state)
            return
        if not data:
            self.close_conn(conn, state)
            return
        state['buf'] += data
        if b'\n' not in state['buf']:
            if len(state['buf']) > 1 << 24:
                self.reply(conn, {'error': 'request too large'})
                self.close_conn(conn, state)
            return
        line = state['buf'].split(b'\n', 1)[0]
        try:
            req = json.loads(line)
            if isinstance(req, dict) and 'status_of' in req and not state['fds']:
                self.status_of(conn, state, req['status_of'])
                return
            if len(state['fds']) != 3:
                raise ValueError('want 3 file descriptors, got %d' % len(state['fds']))
            if req.get('handler_type') not in HANDLER_TYPES:
                raise ValueError('bad handler_type %r' % (req.get('handler_type'),))
            if not req.get('handler_path'):
                raise ValueError('no handler_path')
        except ValueError as e:
            self.reply(conn, {'error': 'bad request: %s' % e})
            self.close_conn(conn, state)
            return
        state['line'] = line
        self.spawn(conn, state, req)

    MAX_LANE_STATUS = 1024

    def status_of(self, conn, state, pid):
        """Answers how a lane's child ended: at once when it was reaped,
        else when it is."""
        if isinstance(pid, int) and pid in self.lanes:
            self.sel.unregister(conn)
            self.status_waiters.setdefault(pid, []).append(conn)
            return
        msg = self.lane_status.get(pid) if isinstance(pid, int) else None
        self.reply(conn, dict(msg) if msg is not None else {'error': 'no lane with pid %r' % (pid,)})
        self.close_conn(conn, state)

    def compiled(self, path, handler_type):
        key = (path, handler_type)
        code = self.code_cache.get(key)
        if code is not None:
            self.code_cache.move_to_end(key)
            return code
        try:
            code = compile_file(path, handler_type)
        except LoadError as e:
            return e  # not cached: the file may appear later
        self.code_cache[key] = code
        while len(self.code_cache) > self.MAX_CODE_CACHE:
            self.code_cache.popitem(last=False)
        return code

    def spawn(self, conn, state, req):
        code = self.compiled(req['handler_path'], req['handler_type'])
        fds = state['fds']
        pid = None
        key = _reuse_key(req)
        if key is not None and isinstance(code, types.CodeType):
            pid = self.assign_parked(key, state['line'], fds)
        else:
            req.pop('reuse', None)
        if pid is None:
            pid = self.assign_idle(req, fds, code)
        if pid is None:
            pid = self.fork_for(conn, state, req, fds, code)
            if pid is None:
                return
        for fd in fds:
            _close(fd)
        state['fds'] = []
        state['pid'] = pid
        if key is not None and req.get('lane') is True:
            self.wanted_lane.add(pid)
        else:
            self.wanted_lane.discard(pid)
        self.children[pid][0] = conn
        if not self.reply(conn, {'pid': pid}):
            _kill_group(pid)

    def fork_for(self, conn, state, req, fds, code):
        """Forks a child for this request now (no idle child was ready)."""
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()
        try:
            pid = os.fork()
        except OSError as e:
            self.reply(conn, {'error': 'fork: %s' % e})
            self.close_conn(conn, state)
            return None
        if pid == 0:
            _child_main(lambda: (os.setsid(), self.child(req, fds, code))[1])
        self.watch_child(pid)
        return pid

    def watch_child(self, pid):
        pidfd = os.pidfd_open(pid)
        self.children[pid] = [None, pidfd]
        self.sel.register(pidfd, selectors.EVENT_READ, ('child', pid))

    def assign_idle(self, req, fds, code):
        """Hands the request and its fds to a pre-forked child; returns its
        pid, or None when none is ready."""
        while self.idle:
            pid, sock = self.idle.popleft()
            msg = dict(req)
            if isinstance(code, types.CodeType):
                msg['code'] = base64.b64encode(marshal.dumps(code)).decode()
            try:
                sock.setblocking(True)
                socket.send_fds(sock, [(json.dumps(msg) + '\n').encode()], fds)
            except OSError:
                _kill_group(pid)
                sock.close()
                continue
            sock.setblocking(False)
            self.sel.register(sock, selectors.EVENT_READ, ('status', pid))
            key = _reuse_key(req)
            if key is not None:
                self.reuse_keys[pid] = key
            return pid
        return None

    def assign_parked(self, key, line, fds):
        """Hands the request (its line as the client sent it) to a child
        parked under key; returns its pid, or None when none is. The child
        runs the code it ran last: the key names the handler file."""
        parked = self.parked.get(key)
        while parked:
            pid, sock, _ = parked.pop()
            if not parked:
                del self.parked[key]
            try:
                sock.setblocking(True)
                socket.send_fds(sock, [line + b'\n'], fds)
            except OSError:
                _kill_group(pid)
                sock.close()
                parked = self.parked.get(key)
                continue
            sock.setblocking(False)
            self.sel.register(sock, selectors.EVENT_READ, ('status', pid))
            self.reuse_keys[pid] = key
            return pid
        return None

    def park(self, pid, sock):
        """Keeps a child that ran a reusable invocation for the next one of
        its key."""
        key = self.reuse_keys.pop(pid, None)
        if key is None:
            _kill_group(pid)
            sock.close()
            return False
        parked = self.parked.setdefault(key, [])
        parked.append((pid, sock, time.monotonic()))
        while len(parked) > self.MAX_PARKED:
            old_pid, old_sock, _ = parked.pop(0)
            _kill_group(old_pid)
            old_sock.close()
        while sum(len(p) for p in self.parked.values()) > self.MAX_PARKED_TOTAL:
            oldest = min(self.parked, key=lambda k: self.parked[k][0][2])
            old_pid, old_sock, _ = self.parked[oldest].pop(0)
            if not self.parked[oldest]:
                del self.parked[oldest]
            _kill_group(old_pid)
            old_sock.close()
        return pid in [p for p, _, _ in parked]

    def retire_parked(self):
        """Kills the children parked longer than PARK_SECONDS; returns the
        seconds until the next one is due, or None when none is parked."""
        now = time.monotonic()
        due = None
        for key in list(self.parked):
            keep = []
            for pid, sock, since in self.parked[key]:
                if now - since >= self.PARK_SECONDS:
                    _kill_group(pid)
                    sock.close()
                else:
                    keep.append((pid, sock, since))
                    left = self.PARK_SECONDS - (now - since)
                    due = left if due is None else min(due, left)
            if keep:
                self.parked[key] = keep
            else:
                del self.parked[key]
        return due

    def early_status(self, sock, pid):
        """A pre-forked child reports its exit status before it exits."""
        try:
            data = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b''
        self.sel.unregister(sock)
        entry = self.children.get(pid)
        msg = None
        if data:
            try:
                msg = json.loads(data.split(b'\n', 1)[0])
            except ValueError:
                pass
        parked = False
        lane = False
        if msg is not None and msg.get('parked') and entry is not None and entry[0] is not None:
            if pid in self.wanted_lane:
                lane = True
            else:
                parked = self.park(pid, sock)
        else:
            self.reuse_keys.pop(pid, None)
            sock.close()
        self.wanted_lane.discard(pid)
        if msg is None or entry is None or entry[0] is None:
            return  # it died without a report: reap tells
        conn, entry[0] = entry[0], None
        if lane:
            self.hand_over(conn, pid, sock)
            return
        # The reply is the zygote's, not the child's word: parked only when
        # it was.
        msg = {'exit_code': msg.get('exit_code')}
        if parked:
            msg['parked'] = True
        self.reply(conn, self.with_idle(msg))
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def hand_over(self, conn, pid, sock):
        """Gives a kept child's control socket to the client that asked for
        a lane, with the final reply, and closes the connection."""
        self.reuse_keys.pop(pid, None)
        msg = self.with_idle({'exit_code': 0, 'parked': True, 'lane': True})
        try:
            conn.setblocking(True)
            conn.settimeout(5)
            socket.send_fds(conn, [(json.dumps(msg) + '\n').encode()], [sock.fileno()])
            self.lanes.add(pid)
            self.lane_status.pop(pid, None)  # a recycled pid's old status
        except OSError:
            _kill_group(pid)
        finally:
            sock.close()
            try:
                self.sel.unregister(conn)
            except (KeyError, ValueError):
                pass
            conn.close()

    def refill(self):
        while len(self.idle) < self.prefork_target:
            if not self.prefork():
                return

    def prefork(self):
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:
            parent_end.close()
            child_end.close()
            return False
        if pid == 0:
            _child_main(lambda: self.idle_child(child_end))
        child_end.close()
        self.watch_child(pid)
        self.idle.append((pid, parent_end))
        return True

    def idle_child(self, sock):
        """A pre-forked child: warm up, wait for one invocation, run it."""
        os.setsid()
        keep = sock.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, _max_fd())
        if WARM_UP:
            _warm_up()
        uses = 0
        code = None
        while True:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 3)
            while data and b'\n' not in data:
                more = sock.recv(1 << 16)
                if not more:
                    break
                data += more
            if not data or len(fds) != 3:
                return 0  # the zygote went away (or retired this child)
            req = json.loads(data.split(b'\n', 1)[0])
            # A parked child's next run of the same handler (its reuse key
            # names the file) comes without the code it already holds.
            if req.get('code'):
                code = marshal.loads(base64.b64decode(req['code']))
            status = self.child(req, fds, code, keep=keep)
            uses += 1
            park = bool(req.get('reuse')) and status == 0 and uses < MAX_USES
            # Report the status before exiting: closing stdio first gives
            # the client its EOFs, and the exit itself (tearing down the
            # address space) then costs nobody any latency. A child kept for
            # reuse points its stdio at /dev/null instead.
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:
                    pass
            if park:
                _set_dumpable(False)
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                _close(null)
                # What the run's streams still hold (a flush that failed)
                # goes to /dev/null now, not into the next run's output
                # when they are dropped.
                for stream in self.stdio:
                    try:
                        stream.close()
                    except BaseException:
                        pass
                reply = PARKED_REPLY
            else:
                for fd in (0, 1, 2):
                    _close(fd)
                reply = (json.dumps({'exit_code': status}) + '\n').encode()
            try:
                sock.sendall(reply)
            except OSError:
                return status
            if not park:
                return status

    def child(self, req, fds, code, keep=-1):
        """Runs one invocation in a forked child that is already the leader
        of its own session (so of its process group). keep is an fd to leave
        open."""
        gc.enable()
        _set_dumpable(True)
        for sig, disposition in CHILD_SIGNALS:
            _signal.signal(sig, disposition)
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
        if keep >= 3:
            os.closerange(3, keep)
            os.closerange(keep + 1, _max_fd())
        else:
            os.closerange(3, _max_fd())
        # No stream over fd 1: run() writes the protocol on a dup of it
        # and points stdout at stderr, and nothing writes to it before.
        sys.stdin = open(0, 'r', encoding='utf-8', closefd=False)
        sys.stderr = open(2, 'w', encoding='utf-8', closefd=False, buffering=1)
        sys.stdout = sys.stderr
        self.stdio = (sys.stdin, sys.stderr)
        try:
            _set_environ({str(k): str(v) for k, v in (req.get('env') or {}).items()})
            if req.get('cwd'):
                os.chdir(req['cwd'])
            apply_rlimits(req.get('rlimits') or {})
        except (OSError, ValueError, TypeError) as e:
            sys.stderr.write('jobx: cannot set up the invocation: %s\n' % e)
            return 2
        handler_type = req['handler_type']
        return run(req['handler_path'], handler_type, os.environ.get('JOBX_HANDLER', ''), code,
                   stdin=sys.stdin)

    def reap(self, pid):
        conn, pidfd = self.children.pop(pid)
        for i, (idle_pid, sock) in enumerate(self.idle):
            if idle_pid == pid:
                del self.idle[i]
                sock.close()
                break
        self.reuse_keys.pop(pid, None)
        self.wanted_lane.discard(pid)
        for key, parked in list(self.parked.items()):
            for i, (parked_pid, sock, _) in enumerate(parked):
                if parked_pid == pid:
                    del parked[i]
                    sock.close()
                    if not parked:
                        del self.parked[key]
                    break
        self.sel.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            msg = {'signal': os.WTERMSIG(status)}
        else:
            msg = {'exit_code': os.waitstatus_to_exitcode(status)}
        if pid in self.lanes:
            self.lanes.discard(pid)
            self.lane_status[pid] = msg
            while len(self.lane_status) > self.MAX_LANE_STATUS:
                self.lane_status.popitem(last=False)
            for waiter in self.status_waiters.pop(pid, []):
                self.reply(waiter, dict(msg))
                waiter.close()
        if conn is not None:
            self.reply(conn, self.with_idle(msg))
            try:
                self.sel.unregister(conn)
            except (KeyError, ValueError):
                pass
            conn.close()

    def with_idle(self, msg):
        """Adds the pids of the pre-forked children still waiting for an
        invocation to a final reply: a containerd box spares them (and only
        them, with a parked child) when it kills what a run left."""
        msg['idle'] = [pid for pid, _ in self.idle]
        return msg

    @staticmethod
    def reply(conn, msg):
        data = (json.dumps(msg) + '\n').encode()
        try:
            # Usually the short line fits the socket's buffer at once.
            data = data[conn.send(data):]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return False
        if not data:
            return True
        conn.setblocking(True)
        conn.settimeout(5)
        try:
            conn.sendall(data)
            return True
        except OSError:
            return False
        finally:
            conn.setblocking(False)


RLIMITS = {'as': resource.RLIMIT_AS, 'cpu': resource.RLIMIT_CPU,
           'nproc': resource.RLIMIT_NPROC, 'fsize': resource.RLIMIT_FSIZE}


# The env _set_environ applied last, and a copy of os.environ's bytes
# (CPython's os.environ._data) right after: while they still match, the
# next run's env is applied from its difference to the last one, without
# walking os.environ (each key and value of which it encodes or decodes).
_last_env = None
_last_data = None


def _set_environ(env):
    """Makes os.environ (and the C environment under it) exactly env,
    touching only what differs: a kept child's next run differs in a few
    variables, and os.environ.clear() alone costs O(n^2) (each popitem
    lists every key), a third of a small run's CPU. env maps str to str."""
    global _last_env, _last_data
    cur = os.environ
    data = getattr(cur, '_data', None)
    if type(data) is not dict:
        data = None
    if data is not None and _last_env is not None and data == _last_data:
        # Nothing changed os.environ since the last run's was set (the
        # handler did not), so it is _last_env, in both.
        last = _last_env
        for k in [k for k in last if k not in env]:
            del cur[k]
        for k, v in env.items():
            if last.get(k) != v:
                cur[k] = v
    else:
        for k in [k for k in cur if k not in env]:
            del cur[k]
        for k, v in env.items():
            if cur.get(k) != v:
                cur[k] = v
    if data is not None:
        _last_env = dict(env)
        _last_data = dict(data)


# The dispositions a child sets before each run (a previous run's handler
# may have changed them), as plain ints for _signal.signal.
CHILD_SIGNALS = tuple((int(sig), int(signal.SIG_DFL)) for sig in (
    signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP)) + (
    (int(signal.SIGPIPE), int(signal.SIG_IGN)),)


def apply_rlimits(limits):
    for name, value in limits.items():
        if name not in RLIMITS:
            raise ValueError('unknown rlimit %r' % name)
        if value:
            resource.setrlimit(RLIMITS[name], (int(value), int(value)))


# PARKED_REPLY is a kept child's status line (a child is kept only after
# a run that exited 0).
PARKED_REPLY = (json.dumps({'exit_code': 0, 'parked': True}) + '\n').encode()

# MAX_USES bounds the invocations one reused child runs.
MAX_USES = 1000


def _reuse_key(req):
    """The key under which a request may reuse a parked child, or None."""
    if not req.get('reuse'):
        return None
    return (str(req['reuse']), req['handler_path'], req['handler_type'])


def _kill_group(pid):
    for target in (-pid, pid):
        try:
            os.kill(target, signal.SIGKILL)
            return
        except ProcessLookupError:
            continue
        except OSError:
            return


def _close(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _max_fd():
    try:
        return os.sysconf('SC_OPEN_MAX')
    except (ValueError, OSError):
        return 1 << 16


# --- main ----------------------------------------------------------------------

def main(argv):
    if len(argv) == 2 and argv[0] == 'run':
        handler_type = os.environ.get('JOBX_HANDLER_TYPE', '')
        return run(argv[1], handler_type, os.environ.get('JOBX_HANDLER', ''))
    if len(argv) == 3 and argv[0] == 'check':
        try:
            compile_source(sys.stdin.read(), argv[1], argv[2])
        except LoadError as e:
            sys.stderr.write('%s\n' % e)
            return 2
        return 0
    if len(argv) == 2 and argv[0] == 'zygote':
        Zygote(argv[1]).serve()
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
