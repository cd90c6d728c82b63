/* plugin_hello.h: the plug-in driver of the tests (plugin_hello.c). */
#ifndef FOMAP_TEST_PLUGIN_HELLO_H
#define FOMAP_TEST_PLUGIN_HELLO_H

#define HELLO_TEXT "hello from a plug-in\n"

/* The plug-in's entry point: registers the device "hello". => 0, -errno */
int fomap_driver_init(void);

#endif
