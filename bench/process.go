package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// process is a child process: a system under test or a proxy.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	err     error
	b       *bench
}

// start starts a child with its output in a log file under the temporary
// directory. The child gets a process group of its own, so that a Ctrl-C
// in the terminal reaches only this driver, which then stops its children
// in order (servers flush before the databases are dropped).
func (b *bench) start(name string, env []string, bin string, args ...string) (*process, error) {
	b.mu.Lock()
	b.seq++
	logPath := filepath.Join(b.tmp, fmt.Sprintf("%02d-%s.log", b.seq, name))
	b.mu.Unlock()
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	b.record("start "+name, bin, args)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{}), b: b}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	b.mu.Lock()
	b.procs[p] = struct{}{}
	b.mu.Unlock()
	return p, nil
}

func (p *process) pid() int {
	if p == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *process) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process (by its ID) and waits for it to exit,
// killing it after 30 s. A process that had already exited is only
// reported.
func (p *process) stop() error {
	defer func() {
		p.b.mu.Lock()
		delete(p.b.procs, p)
		p.b.mu.Unlock()
	}()
	if p.done() {
		return p.exitError()
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.exitError()
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within 30s of SIGTERM and was killed", p.name)
	}
}

// kill sends SIGKILL to the process (by its ID) and waits for it to be
// gone: a crash, for the failover trials.
func (p *process) kill() error {
	defer func() {
		p.b.mu.Lock()
		delete(p.b.procs, p)
		p.b.mu.Unlock()
	}()
	if p.done() {
		return fmt.Errorf("%s had exited before it was to be killed (log: %s): %w", p.name, p.logPath, p.err)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.exited
	return nil
}

func (p *process) exitError() error {
	if p.err != nil {
		return fmt.Errorf("%s: %w (log: %s)", p.name, p.err, p.logPath)
	}
	return nil
}
