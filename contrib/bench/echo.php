<?php
// fpmd's echo page (see fpmd's echo handler) in PHP, so that php-fpm answers
// the benchmark with a body of about the same size.  PHP keeps nothing
// between requests without an extension such as APCu, so "requests" is 0.
$stdin_bytes = strlen(file_get_contents('php://input'));
$params = $_SERVER;
unset($params['PHP_SELF'], $params['REQUEST_TIME'], $params['REQUEST_TIME_FLOAT'],
      $params['argv'], $params['argc']);
header('Status: 200 OK');
header('Content-Type: text/plain; charset=utf-8');
$out = "fpmd echo\nrole: " . ($params['FCGI_ROLE'] ?? 'RESPONDER') . "\npool: www\n"
     . 'pid: ' . getmypid() . "\nuid: " . posix_getuid() . "\ngid: " . posix_getgid()
     . "\ngroups: " . implode(' ', posix_getgroups()) . "\ncwd: " . getcwd()
     . "\nrequests: 0\nstdin_bytes: $stdin_bytes\nparams: " . count($params) . "\n";
foreach ($params as $name => $value)
    $out .= "$name=$value\n";
echo $out;
